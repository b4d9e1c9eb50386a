"""The operator commands: `chirp topics | lag | replay | rebuild | dlq | seed | docs`.

Exit codes scripts can rely on: 0 done; 1 the operation failed or a check did not pass (lag over `--max-lag`,
a replay that could not finish, an unknown dead-letter id); 2 bad usage; 3 Kafka, PostgreSQL or Redis unreachable.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import json
import os
import time
from collections import Counter
from collections.abc import Coroutine, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import orjson
import typer
from rich.console import Console, ConsoleDimensions
from rich.live import Live
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from chirp.settings import Settings

if TYPE_CHECKING:
    from consumers.runtime import Consumer

EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE = 1, 2, 3
T = TypeVar("T")

ops_app = typer.Typer(help="Chirp operator tools.", no_args_is_help=True)
dlq_app = typer.Typer(help="Dead-lettered events: list, show, retry (after a fix) or drop them.", no_args_is_help=True)
ops_app.add_typer(dlq_app, name="dlq")
erasure_app = typer.Typer(help="Erasures of deleted accounts and posts (docs/erasure.md).", no_args_is_help=True)
ops_app.add_typer(erasure_app, name="erasure")
_TERMINAL = any(os.isatty(fd) for fd in (0, 1, 2))


class _Console(Console):
    """rich's console, but 200 columns wide instead of 80 with no terminal at all and no COLUMNS (cron, CI, a
    service's log), so tables do not cut names short with "…". A terminal's width or COLUMNS still decides."""

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size
        return size if _TERMINAL or "COLUMNS" in os.environ else ConsoleDimensions(200, size.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]


console = _Console()
errors = _Console(stderr=True)


def usage_error(message: str) -> NoReturn:
    """A mistyped name is bad usage, not a crash: one line on stderr, exit 2."""
    typer.echo(f"chirp: {message}", err=True)
    raise typer.Exit(EXIT_USAGE)


def consumer_named(name: str) -> Consumer:
    """The consumer of module `name` under consumers/ (or of a dotted module path); exit 2 when there is none."""
    from consumers.runtime import Consumer, all_consumers, load

    module = name if "." in name else f"consumers.{name}"
    try:
        exists = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a dotted path whose package is missing
        exists = False
    if not exists or not isinstance(getattr(importlib.import_module(module), "consumer", None), Consumer):
        usage_error(f"no consumer {name!r} (consumers: {', '.join(sorted(c.name for c in all_consumers()))})")
    return load(name)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine; turn unreachable services into exit 3, unknown names into exit 2 and operation errors into
    exit 1."""
    import asyncpg
    import redis.exceptions
    from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError

    from ops._kafka import UnknownName
    from ops.replay import ReplayError

    try:
        return asyncio.run(coro)
    except (
        KafkaConnectionError,
        KafkaTimeoutError,
        ConnectionError,
        redis.exceptions.ConnectionError,
        asyncpg.CannotConnectNowError,
        asyncpg.PostgresConnectionError,
    ) as exc:
        errors.print(f"[red]unreachable:[/] {exc!r}")
        raise typer.Exit(EXIT_UNAVAILABLE) from None
    except UnknownName as exc:
        usage_error(str(exc))
    except (ReplayError, ValueError) as exc:
        errors.print(f"[red]failed:[/] {exc}")
        raise typer.Exit(EXIT_FAILED) from None


def _when(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if at else "-"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.1f}s"


def _print_json(rows: Iterable[dict[str, Any]]) -> None:
    typer.echo(orjson.dumps(list(rows), option=orjson.OPT_INDENT_2, default=str).decode())


# topics -----------------------------------------------------------------------------------------------------


@ops_app.command()
def topics(
    internal: Annotated[bool, typer.Option(help="Include Kafka's own __ topics.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines for scripts instead of a table.")] = False,
) -> None:
    """Every topic with its partitions (replicas, in sync, leader), message counts, oldest and newest offsets and
    times. Partitions bound how many processes of one consumer share a topic: see docs/scaling.md before adding any."""
    from ops.topics import describe

    rows = _run(describe(Settings(), internal=internal))
    if as_json:
        return _print_json({**r.__dict__, "messages": r.messages, "newest_offset": r.newest_offset} for r in rows)
    parts = Counter(r.topic for r in rows)
    heads = ("part", "in sync", "leader", "messages", "oldest", "newest", "oldest at", "newest at")
    table = Table(Column("topic", no_wrap=True), *heads, title="Topics")  # a long name stays whole
    for r in rows:
        newest = "-" if r.newest_offset is None else str(r.newest_offset)
        table.add_row(
            r.topic,
            f"{r.partition} of {parts[r.topic]}",
            f"{r.in_sync}/{r.replicas}",
            "none" if r.leader < 0 else str(r.leader),
            str(r.messages),
            str(r.oldest_offset),
            newest,
            _when(r.oldest_at),
            _when(r.newest_at),
        )
    console.print(table)


# lag --------------------------------------------------------------------------------------------------------


def _lag_table(rows: list[Any]) -> Table:
    now = datetime.now(UTC)
    table = Table(
        "group", "topic", "part", "committed", "end", "lag", "oldest unprocessed", title=f"Lag at {_when(now)}"
    )
    for r in rows:
        table.add_row(r.group, r.topic, str(r.partition), str(r.committed), str(r.end), str(r.lag), _age(r.age_s(now)))
    return table


@ops_app.command()
def lag(
    group: Annotated[
        list[str] | None,
        typer.Option(
            "--group",
            "-g",
            help="Only these groups: a consumer's name (its group under CHIRP_CONSUMER_GROUP_PREFIX) or a group id."
            " Default: every group under the prefix.",
        ),
    ] = None,
    watch: Annotated[bool, typer.Option("--watch", help="Refresh until Ctrl-C.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes with --watch.")] = 2.0,
    max_lag: Annotated[int | None, typer.Option(help="Exit 1 when any partition lags more than this.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON for scripts instead of a table.")] = False,
) -> None:
    """Per consumer group and partition: committed offset, end offset, lag, age of the oldest unprocessed event."""
    from ops.lag import measure

    settings = Settings()
    rows = _run(measure(settings, group))
    if watch:
        try:
            with Live(_lag_table(rows), console=console, refresh_per_second=4) as live:
                while True:
                    time.sleep(interval)
                    rows = _run(measure(settings, group))
                    live.update(_lag_table(rows))
        except KeyboardInterrupt:
            pass
    elif as_json:
        _print_json({**r.__dict__, "lag": r.lag, "age_s": r.age_s()} for r in rows)
    else:
        console.print(_lag_table(rows))
    if max_lag is not None and any(r.lag > max_lag for r in rows):
        raise typer.Exit(EXIT_FAILED)


# replay / rebuild -------------------------------------------------------------------------------------------


class _JsonProgress:
    """Replay progress as JSON lines on stdout, at most every half second (and every phase change)."""

    def __init__(self) -> None:
        self.last: tuple[str, float] = ("", 0.0)

    def __call__(self, p: Any) -> None:
        now = time.monotonic()
        if p.phase != self.last[0] or now - self.last[1] >= 0.5:
            self.last = (p.phase, now)
            print(json.dumps({"progress": dataclasses.asdict(p)}), flush=True)


class _Bar:
    """A rich progress bar fed by replay progress reports: events/s, lag left, ETA."""

    def __init__(self) -> None:
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.completed:,.0f} events  {task.fields[rate]:,.0f}/s"),
            TextColumn("lag {task.fields[lag]:,}  ETA {task.fields[eta]}"),
            TimeElapsedColumn(),
            console=errors,
        )
        self.tasks: dict[str, Any] = {}

    def __call__(self, p: Any) -> None:
        if p.consumer not in self.tasks:
            self.tasks[p.consumer] = self.progress.add_task(p.consumer, total=None, rate=0.0, lag=0, eta="-")
        eta = "-" if p.eta_s is None else _age(p.eta_s)
        self.progress.update(
            self.tasks[p.consumer],
            description=f"{p.consumer} [{p.phase}]",
            completed=p.processed,
            total=p.processed + p.lag,
            rate=p.rate,
            lag=p.lag,
            eta=eta,
        )


def _print_plan(results: list[Any]) -> None:
    """A dry run: per consumer, the offsets each partition would be read between, and the tables and keys."""
    for r in results:
        table = Table("topic/partition", "from offset", "to offset", "events", title=f"{r.consumer}: would replay")
        for tp, start in sorted(r.start.items()):
            table.add_row(tp, str(start), str(r.end.get(tp, start)), f"{r.end.get(tp, start) - start:,}")
        table.add_row("all", "", "", f"{r.planned:,}", style="bold")
        console.print(table)
        console.print(f"tables: {', '.join(r.tables) or '-'}", highlight=False)
        if r.collections:
            console.print(f"arangodb collections (dropped and rebuilt): {', '.join(r.collections)}", highlight=False)
        console.print(f"redis keys: {', '.join(f'{p}*' for p in r.redis_prefixes) or '-'}", highlight=False)


def _print_results(results: list[Any]) -> None:
    if results and all(r.dry_run for r in results):
        return _print_plan(results)
    table = Table(
        "consumer",
        "planned",
        "processed",
        "dead-lettered",
        "publishes dropped",
        "events/s",
        "seconds",
        "offsets to live group",
    )
    for r in results:
        if r.dry_run:
            table.add_row(r.consumer, f"{r.planned:,}", "(dry run)", "-", "-", "-", "-", "-")
        else:
            handed = "yes" if r.offsets_handed_off else "no (group running: keeps its own)"
            table.add_row(
                r.consumer,
                f"{r.planned:,}",
                f"{r.processed:,}",
                str(r.dead_lettered),
                str(r.publishes_dropped),
                f"{r.rate:,.0f}",
                f"{r.seconds:.1f}",
                handed,
            )
    console.print(table)


@ops_app.command()
def replay(
    consumers: Annotated[
        list[str],
        typer.Argument(
            help="Consumer modules under consumers/ (or dotted module paths); several are replayed together: one"
            " reader, each event fetched and decoded once.",
            metavar="CONSUMER",
            show_default=False,
        ),
    ],
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning", help="Rebuild from the first event (default).")
    ] = False,
    from_time: Annotated[
        datetime | None,
        typer.Option("--from-time", help="Start from the live model and reprocess events since T (ISO)."),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be replayed; change nothing.")] = False,
    progress_json: Annotated[
        bool, typer.Option("--progress-json", hidden=True, help="Progress and results as JSON lines on stdout.")
    ] = False,
) -> None:
    """Rebuild each CONSUMER's read model from the log into a shadow copy, then swap it in while the app stays
    live."""
    from ops.replay import replay as run_replay

    if from_beginning and from_time:
        raise typer.BadParameter("--from-beginning and --from-time exclude each other")
    for name in consumers:
        consumer_named(name)
    since = from_time.replace(tzinfo=from_time.tzinfo or UTC) if from_time else None
    if progress_json:  # `chirp rebuild --all --jobs N` runs each replay so and shows the progress itself
        report = _JsonProgress()
        results = _run(run_replay(Settings(), consumers, from_time=since, dry_run=dry_run, on_progress=report))
        print(json.dumps({"results": [dataclasses.asdict(r) for r in results]}), flush=True)
        return
    bar = _Bar()
    with bar.progress:
        results = _run(run_replay(Settings(), consumers, from_time=since, dry_run=dry_run, on_progress=bar))
    _print_results(results)


@ops_app.command()
def rebuild(
    all_: Annotated[bool, typer.Option("--all", help="Every consumer that owns a read model.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be replayed; change nothing.")] = False,
    jobs: Annotated[
        int,
        typer.Option("--jobs", "-j", min=1, help="Replays at once, each in its own process (default: one per core)."),
    ] = os.cpu_count() or 1,
) -> None:
    """Rebuild every read model, each after the models it reads (users before those that resolve handles through
    it); independent ones run side by side, up to --jobs at a time."""
    from ops.replay import rebuild_all

    if not all_:
        raise typer.BadParameter("say --all (use `chirp replay NAME` for one consumer)")
    bar = _Bar()
    with bar.progress:
        results = _run(rebuild_all(Settings(), dry_run=dry_run, on_progress=bar, jobs=jobs))
    _print_results(results)


# dlq --------------------------------------------------------------------------------------------------------

ConsumerArg = Annotated[str | None, typer.Argument(help="Only this consumer's dead letters.")]
IdOpt = Annotated[list[str] | None, typer.Option("--id", help="Only these letters (ids from `dlq list`).")]


def _select(consumer: str | None, ids: list[str] | None, *, handled: bool = False) -> list[Any]:
    from ops.dlq import letters

    if consumer:
        _run(_dead_letters_of(consumer))
    found = _run(letters(Settings(), consumer, handled=handled or bool(ids)))
    if not ids:
        return found
    by_id = {x.id: x for x in found}
    unknown = [i for i in ids if i not in by_id]
    if unknown:
        errors.print(f"[red]no such dead letter:[/] {', '.join(unknown)}")
        raise typer.Exit(EXIT_FAILED)
    return [by_id[i] for i in ids]


async def _dead_letters_of(consumer: str) -> None:
    """`UnknownName` unless `consumer` is a consumer or has a dead-letter topic (a mistyped name, not no letters)."""
    from consumers.runtime import all_consumers
    from ops import _kafka
    from schemas.topics import dead_letters

    if consumer in {c.name for c in all_consumers()}:
        return
    async with _kafka.admin(Settings()) as client:
        if dead_letters(consumer).name not in await client.list_topics():
            raise _kafka.UnknownName(f"no consumer {consumer!r} and no topic {dead_letters(consumer).name}")


@dlq_app.command("list")
def dlq_list(
    consumer: ConsumerArg = None,
    all_: Annotated[bool, typer.Option("--all", help="Include letters already retried or dropped.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON for scripts instead of a table.")] = False,
) -> None:
    """Dead-lettered events not yet handled: consumer, original topic, error, attempts, time."""
    chosen = _select(consumer, None, handled=all_)
    if as_json:
        keys = ("id", "consumer", "reason", "error", "attempts", "at", "decision", "copies", "origin")
        return _print_json({k: getattr(x, k) for k in keys} for x in chosen)
    table = Table("id", "consumer", "from", "reason", "error", "attempts", "at", "status", title="Dead letters")
    for x in chosen:
        topic, partition, offset = x.origin
        table.add_row(
            x.id,
            x.consumer,
            f"{topic}/{partition}@{offset}",
            x.reason,
            x.error[:80],
            str(x.attempts),
            _when(x.at),
            x.decision or "pending",
        )
    console.print(table)


@dlq_app.command("show")
def dlq_show(consumer: ConsumerArg = None, ids: IdOpt = None) -> None:
    """Everything about the pending letters (or the given ids): headers, the full error, the event itself."""
    for x in _select(consumer, ids):
        console.rule(f"{x.id} ({x.decision or 'pending'})")
        for name, value in sorted(x.headers.items()):
            console.print(f"[bold]{name}[/]: {value}", highlight=False)
        console.print(f"[bold]key[/]: {x.key.decode(errors='replace') if x.key else '-'}", highlight=False)
        try:
            console.print_json(x.value.decode())
        except ValueError:
            console.print(repr(x.value))


@dlq_app.command("retry")
def dlq_retry(
    consumer: ConsumerArg = None,
    ids: IdOpt = None,
    note: Annotated[str, typer.Option(help="Why (kept with the decision).")] = "",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only show what would be retried.")] = False,
) -> None:
    """Re-deliver the pending letters' events to the consumer that failed them (after fixing the cause); an event
    that fails validation again is not retried and stays pending."""
    from ops.dlq import retry

    result = _run(retry(Settings(), _select(consumer, ids), note, dry_run=dry_run))
    table = Table("id", "consumer", "from", "action", title="Retry (dry run)" if dry_run else "Retry")
    for x in result.retried:
        table.add_row(x.id, x.consumer, "/".join(x.origin), "would retry" if dry_run else "retried")
    for x, why in result.invalid:
        table.add_row(x.id, x.consumer, "/".join(x.origin), f"not retried, stays dead-lettered: {why[:100]}")
    console.print(table)
    verb = "would retry" if dry_run else "retried"
    console.print(f"{verb} {len(result.retried)} event(s); {len(result.invalid)} fail validation, not retried")


@dlq_app.command("drop")
def dlq_drop(
    consumer: ConsumerArg = None,
    ids: IdOpt = None,
    note: Annotated[str, typer.Option(help="Why (kept with the decision).")] = "",
) -> None:
    """Record that the pending letters (or the given ids) will not be retried; `list` hides them from now on."""
    from ops.dlq import drop

    chosen = _select(consumer, ids)
    done = _run(drop(Settings(), chosen, note))
    console.print(f"dropped {done} event(s)")


# seed -------------------------------------------------------------------------------------------------------


async def _publish_seed(settings: Settings, users: int, posts: int, seed: int, chunk: int) -> int:
    from ops.seed import generate
    from producers.broker import Publisher, ensure_topics, make_broker
    from store.keys import PgKeyStore
    from store.postgres import connect

    await ensure_topics(settings)
    broker = make_broker(settings)
    await broker.connect()
    pool = await connect(settings)  # personal fields are sealed as the gateway seals them (docs/erasure.md)
    sent = 0
    progress = Progress(
        SpinnerColumn(),
        TextColumn("seeding"),
        BarColumn(),
        TextColumn("{task.completed:,} events"),
        TimeElapsedColumn(),
        console=errors,
    )
    try:
        publisher = Publisher(broker, keys=PgKeyStore.from_settings(settings, pool))
        with progress:
            task = progress.add_task("seed", total=None)
            batch = []
            for event in generate(users, posts, seed):
                batch.append(event)
                if len(batch) == chunk:
                    await publisher.publish_many(batch)
                    sent += len(batch)
                    progress.update(task, completed=sent)
                    batch = []
            await publisher.publish_many(batch)
            sent += len(batch)
            progress.update(task, completed=sent)
    finally:
        await broker.stop()
        await pool.close()
    return sent


@ops_app.command()
def seed(
    users: Annotated[int, typer.Option("--users", min=1, help="Users to register.")],
    posts: Annotated[int, typer.Option("--posts", min=0, help="Posts to create.")],
    seed_: Annotated[int, typer.Option("--seed", help="Same seed, same events (ids included).")] = 1,
    chunk: Annotated[int, typer.Option(help="Events per publish batch.")] = 2000,
) -> None:
    """Publish deterministic demo data (users, follows, posts) as events through the normal pipeline."""
    sent = _run(_publish_seed(Settings(), users, posts, seed_, chunk))
    console.print(f"published {sent:,} events (seed {seed_})")


# docs -------------------------------------------------------------------------------------------------------


@ops_app.command()
def docs(
    out: Annotated[Path | None, typer.Option(help="Directory for the files (default: the repo's docs/).")] = None,
    check: Annotated[bool, typer.Option(help="Write nothing; exit 1 when a file differs from the code.")] = False,
) -> None:
    """Write docs/asyncapi.json (every topic and event) and docs/openapi.json (every HTTP route)."""
    from ops.docs import DOCS_DIR, stale, write

    if check:
        if outdated := stale(out or DOCS_DIR):
            console.print(f"stale: {', '.join(outdated)} (run `chirp docs`)")
            raise typer.Exit(1)
        return
    for path in write(out or DOCS_DIR):
        console.print(str(path))


# erasure ----------------------------------------------------------------------------------------------------


@erasure_app.command("status")
def erasure_status(
    as_json: Annotated[bool, typer.Option("--json", help="JSON for scripts instead of a table.")] = False,
) -> None:
    """Pending and completed erasures: target, asked at, due at, done at, keys deleted, time left."""
    from ops.erasure import status

    rows = _run(status(Settings()))
    if as_json:
        return _print_json(rows)
    table = Table("target", "requested", "due", "done", "keys erased", "time left", title="Erasures")
    for row in rows:
        done = row["done_at"]
        table.add_row(
            str(row["target"]),
            _when(row["requested_at"]),  # type: ignore[arg-type]
            _when(row["due_at"]),  # type: ignore[arg-type]
            _when(done) if done else "pending",  # type: ignore[arg-type]
            str(row["keys_erased"]) if done else "-",
            "-" if done else _age(row["seconds_left"]),  # type: ignore[arg-type]
        )
    console.print(table)


@erasure_app.command("verify")
def erasure_verify(target: Annotated[str, typer.Argument(metavar="USER_ID|POST_ID")]) -> None:
    """Read every topic from the beginning and report any record of USER_ID or POST_ID still readable; exit 1 if
    there is one."""
    from ops.erasure import verify

    verdict = _run(verify(Settings(), target))
    if verdict.clean:
        console.print(f"{target}: {verdict.mentioned} record(s) mention it, none readable")
        return
    for where, offsets in sorted(verdict.readable.items()):
        shown = ", ".join(map(str, offsets[:10])) + (" …" if len(offsets) > 10 else "")
        console.print(f"[red]readable[/] {where}: {len(offsets)} record(s) at offsets {shown}")
    raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the operator commands to the `chirp` app (top-level, as `chirp lag`, `chirp dlq list`...)."""
    for command in (topics, lag, replay, rebuild, seed, docs):
        app.command()(command)
    app.add_typer(dlq_app, name="dlq")
    app.add_typer(erasure_app, name="erasure")
