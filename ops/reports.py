"""`chirp reports list|show|resolve`: the operators' queue of reports and their decisions.

A decision is an event (`report-resolved`), so a replay keeps it and the reporter sees the outcome. What it hides
is told to every read model the way a delete is: a takedown publishes a moderated `post-deleted` for the post; a
suspension one for each live post of the account, hides the account from trending (`trending-moderated`, as
`chirp trending hide` does) and, through the moderation consumer, refuses the account's logins and tokens.
Exit codes: 0 done, 2 bad usage (unknown report, a takedown of an account), 3 Kafka, Redis or PostgreSQL unreachable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Annotated, Any, Literal

import asyncpg
import typer

from chirp.settings import Settings
from schemas.events import (
    Event,
    PostDeleted,
    PostDeletedData,
    ReportResolved,
    ReportResolvedData,
    TrendingModerated,
    TrendingModeratedData,
)
from store.backends import posts_read_model
from store.posts import PostReadModel
from store.reports import PostgresReports, Report

EXIT_USAGE, EXIT_UNAVAILABLE = 2, 3
reports_app = typer.Typer(help="Reports: list the queue, show one, resolve it.", no_args_is_help=True)
Action = Literal["takedown", "dismiss", "suspend"]
ACTIONS: tuple[Action, ...] = ("takedown", "dismiss", "suspend")


def _run(coro: Coroutine[Any, Any, None]) -> None:
    from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError

    try:
        asyncio.run(coro)
    except (KafkaConnectionError, KafkaTimeoutError, ConnectionError, OSError) as exc:
        typer.echo(f"unreachable: {exc!r}", err=True)
        raise typer.Exit(EXIT_UNAVAILABLE) from None


async def _pool(settings: Settings) -> asyncpg.Pool:
    return await asyncpg.create_pool(settings.postgres_dsn(), min_size=1, max_size=2)


def line(report: Report) -> str:
    """One report on one line: id, status/outcome, reason, target."""
    target = f"post {report.post_id} by @{report.handle}" if report.post_id else f"account @{report.handle}"
    outcome = report.action or "open"
    return f"{report.id}  {outcome:<8}  {report.reason or '-':<7}  {target}"


@reports_app.command("list")
def list_reports(
    open_only: Annotated[bool, typer.Option("--open", help="Only the reports not resolved yet.")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many, the oldest first.")] = 100,
) -> None:
    """The reports, oldest first (the queue to work through)."""
    _run(_list(Settings(), open_only=open_only, limit=limit))


async def _list(settings: Settings, *, open_only: bool, limit: int) -> None:
    pool = await _pool(settings)
    try:
        reports = await PostgresReports(pool).listed(open_only=open_only, limit=limit + 1)
    finally:
        await pool.close()
    for report in reports[:limit]:
        typer.echo(line(report))
    if len(reports) > limit:
        typer.echo(f"... and more: resolve these, or raise --limit (now {limit})")
    if not reports:
        typer.echo("no reports" + (" open" if open_only else ""))


@reports_app.command()
def show(report_id: Annotated[str, typer.Argument(help="The report's id.")]) -> None:
    """Everything about one report."""
    _run(_show(Settings(), report_id))


async def _found(pool: asyncpg.Pool, report_id: str) -> Report:
    report = await PostgresReports(pool).get(report_id)
    if report is None:
        typer.echo(f"no report {report_id}", err=True)
        raise typer.Exit(EXIT_USAGE)
    return report


async def _show(settings: Settings, report_id: str) -> None:
    pool = await _pool(settings)
    try:
        report = await _found(pool, report_id)
    finally:
        await pool.close()
    decided = f" ({report.action}, {report.resolved_at:%Y-%m-%d %H:%M:%S})" if report.resolved_at else ""
    target = f"post {report.post_id} by @{report.handle}" if report.post_id else f"account @{report.handle}"
    typer.echo(f"id:       {report.id}")
    typer.echo(f"status:   {report.status}{decided}")
    typer.echo(f"target:   {target}")
    typer.echo(f"reason:   {report.reason}")
    typer.echo(f"filed:    {report.filed_at:%Y-%m-%d %H:%M:%S}" if report.filed_at else "filed:    -")
    typer.echo(f"comment:  {report.comment or '-'}")
    typer.echo(f"note:     {report.note or '-'}")


@reports_app.command()
def resolve(
    report_id: Annotated[str, typer.Argument(help="The report's id.")],
    action: Annotated[str, typer.Option(help="takedown (the post), dismiss, or suspend (the account).")],
    note: Annotated[str, typer.Option(help="Why, for the record.")] = "",
) -> None:
    """Decide a report: take the post down, dismiss the report, or suspend the account."""
    if action not in ACTIONS:
        raise typer.BadParameter(f"--action must be one of {', '.join(ACTIONS)}")
    _run(_resolve(Settings(), report_id, action, note))  # type: ignore[arg-type]


async def decision_events(posts: PostReadModel, report: Report, action: Action, note: str) -> list[Event]:
    """The decision and what it hides (moderated deletes; a trending hide for a suspended account)."""
    if action == "takedown" and report.post_id is None:
        typer.echo("a takedown needs a reported post; this report names an account (use --action suspend)", err=True)
        raise typer.Exit(EXIT_USAGE)
    data = ReportResolvedData(
        report_id=report.id,
        action=action,
        note=note,
        post_id=report.post_id if action == "takedown" else None,
        user_id=report.user_id,
    )
    events: list[Event] = [ReportResolved(actor="operator", payload=data)]
    hidden: list[str] = []
    if action == "takedown" and report.post_id:
        hidden = [report.post_id]
    elif action == "suspend":
        hidden = await posts.ids_by_author(report.user_id)
        if report.handle:
            moderated = TrendingModeratedData(target=f"@{report.handle.lower()}", hidden=True)
            events.append(TrendingModerated(actor="operator", payload=moderated))
    events += [
        PostDeleted(actor="operator", payload=PostDeletedData(post_id=p, author_id=report.user_id, moderated=True))
        for p in hidden
    ]
    return events


async def _resolve(settings: Settings, report_id: str, action: Action, note: str) -> None:
    from producers.broker import Publisher, ensure_topics, make_broker

    pool = await _pool(settings)
    try:
        report = await _found(pool, report_id)
        events = await decision_events(posts_read_model(settings, pool), report, action, note)
    finally:
        await pool.close()
    broker = make_broker(settings)
    await broker.connect()
    try:
        await ensure_topics(settings)
        await Publisher(broker).publish_many(events)
    finally:
        await broker.stop()
    typer.echo(f"resolved: {report_id} ({action}; {len(events) - 1} more events: what it hides)")
