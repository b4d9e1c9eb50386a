"""`chirp trending hide|unhide|show`: keep a hashtag or a user out of trending, and look at the current ranking.

Hiding is an event (`trending-moderated`) rather than a Redis write, so it is in the log and a replay of the trending
consumer keeps it. The consumer applies the newest decision per target. Exit codes: 0 done, 2 bad usage, 3 Kafka or
Redis unreachable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Annotated, Any

import orjson
import typer

from chirp import redis_client
from chirp.settings import Settings
from schemas.events import TrendingModerated, TrendingModeratedData

EXIT_UNAVAILABLE = 3

trending_app = typer.Typer(help="Trending: hide or show a #tag or @user, show the ranking.", no_args_is_help=True)

Target = Annotated[str, typer.Argument(help="A hashtag (`#tag` or `tag`) or a user (`@handle`).")]


def parse_target(raw: str) -> str:
    """`#tag` or `@handle` as the trending consumer keys it; typer.BadParameter otherwise."""
    from store.trending import moderation_target

    target = moderation_target(raw)
    if target is None:
        raise typer.BadParameter(f"{raw!r} is neither a #tag nor an @handle")
    return target


def _run(coro: Coroutine[Any, Any, None]) -> None:
    import redis.exceptions
    from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError

    try:
        asyncio.run(coro)
    except (KafkaConnectionError, KafkaTimeoutError, ConnectionError, redis.exceptions.ConnectionError) as exc:
        typer.echo(f"unreachable: {exc!r}", err=True)
        raise typer.Exit(EXIT_UNAVAILABLE) from None


async def moderate(settings: Settings, target: str, *, hidden: bool) -> TrendingModerated:
    """Publish the decision to hide (or show) `target`; returns the event once Kafka acknowledged it."""
    from producers.broker import Publisher, ensure_topics, make_broker

    event = TrendingModerated(actor="operator", payload=TrendingModeratedData(target=target, hidden=hidden))
    broker = make_broker(settings)
    await broker.connect()
    try:
        await ensure_topics(settings)
        await Publisher(broker).publish(event)
    finally:
        await broker.stop()
    return event


@trending_app.command()
def hide(target: Target) -> None:
    """Keep TARGET out of every trending window (applied within a few seconds)."""
    normalized = parse_target(target)
    _run(_moderate_and_say(normalized, hidden=True))


@trending_app.command()
def unhide(target: Target) -> None:
    """Let TARGET trend again."""
    normalized = parse_target(target)
    _run(_moderate_and_say(normalized, hidden=False))


async def _moderate_and_say(target: str, *, hidden: bool) -> None:
    event = await moderate(Settings(), target, hidden=hidden)
    typer.echo(f"{'hidden' if hidden else 'shown'}: {target} (event {event.id})")


@trending_app.command()
def show(
    window: Annotated[str, typer.Option(help="15m, 1h or 24h.")] = "1h",
    as_json: Annotated[bool, typer.Option("--json", help="Print the stored JSON.")] = False,
) -> None:
    """Print the current ranking of a window and the hidden targets."""
    from store.trending_score import WINDOWS

    if window not in WINDOWS:
        raise typer.BadParameter(f"window must be one of {', '.join(WINDOWS)}")
    _run(_show(Settings(), window, as_json=as_json))


async def _show(settings: Settings, window: str, *, as_json: bool) -> None:

    from store.trending import RedisTrending

    client = redis_client.connect(settings, decode_responses=True)
    try:
        counts = RedisTrending(client)
        blob, hidden = await counts.ranking(window), await counts.hidden()
    finally:
        await client.aclose()
    if as_json:
        typer.echo(blob or '{"hashtags":[],"users":[]}')
        return
    ranking = orjson.loads(blob) if blob else {"hashtags": [], "users": []}
    typer.echo(f"trending hashtags ({window}):")
    for item in ranking["hashtags"]:
        typer.echo(f"  #{item['tag']:<30} score {item['score']:>10}  people {item['count']:>5}  {item['sparkline']}")
    typer.echo(f"trending users ({window}):")
    for item in ranking["users"]:
        typer.echo(f"  @{item['handle']:<30} score {item['score']:>10}  people {item['count']:>5}")
    typer.echo(f"hidden: {', '.join(sorted(hidden)) or '-'}")
