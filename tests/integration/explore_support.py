"""Helpers of the search and trending tests: events built with explicit times, waiting for a group, Redis dumps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, TopicPartition
from ulid import ULID

from chirp.settings import Settings
from schemas.events import (
    PostDeleted,
    PostDeletedData,
    PostParsed,
    PostParsedData,
    UserRegistered,
    UserRegisteredData,
    new_id,
)
from tests.conftest import eventually
from tests.integration.helpers import unique_handle


def ago(**delta: float) -> datetime:
    """A wall-clock instant in the past (the live trending "now" is the newest event time, near the wall clock)."""
    return datetime.now(UTC) - timedelta(**delta)


def parsed(
    author_id: str,
    text: str,
    *,
    at: datetime | None = None,
    tags: tuple[str, ...] = (),
    mentions: tuple[str, ...] = (),
    reply_to: str | None = None,
    post_id: str | None = None,
) -> PostParsed:
    """A post-parsed event as the preparse consumer would publish it (created_at = occurred_at = `at`, and an id
    of that time, as a post's id is made when it is written: search tiers order candidates by id)."""
    when = at or datetime.now(UTC)
    data = PostParsedData(
        post_id=post_id or str(ULID.from_datetime(when)),
        author_id=author_id,
        body=text,
        html=f"<p>{text}</p>",
        text=text,
        hashtags=tags,
        mentions=mentions,
        reply_to=reply_to,
        created_at=when,
    )
    return PostParsed(occurred_at=when, payload=data)


def deleted(post: PostParsed, at: datetime | None = None) -> PostDeleted:
    data = PostDeletedData(post_id=post.payload.post_id, author_id=post.payload.author_id)
    return PostDeleted(occurred_at=at or datetime.now(UTC), payload=data)


def registered(prefix: str = "x", display_name: str = "") -> UserRegistered:
    """A user-registered event for a new user with a unique handle."""
    data = UserRegisteredData(user_id=f"u-{new_id()}", handle=unique_handle(prefix), display_name=display_name)
    return UserRegistered(payload=data)


async def caught_up(settings: Settings, group: str, topics: list[str], timeout: float = 90) -> None:
    """Wait until `group` committed everything published to `topics` so far (so its handlers ran on it)."""
    probe = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=group, enable_auto_commit=False)
    await probe.start()
    try:
        await probe.topics()
        tps = [TopicPartition(t, p) for t in topics for p in probe.partitions_for_topic(t) or ()]
        ends = await probe.end_offsets(tps)

        async def behind() -> int:
            committed = [(await probe.committed(tp)) or 0 for tp in tps]
            return sum(max(0, ends[tp] - done) for tp, done in zip(tps, committed, strict=True))

        await eventually(behind, until=lambda lag: lag == 0, timeout=timeout)
    finally:
        await probe.stop()


async def dump(redis: aioredis.Redis, prefix: str, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every key under `prefix` with its value (strings, hashes, sets), for comparing two states."""
    state: dict[str, Any] = {}
    async for key in redis.scan_iter(match=f"{prefix}*", count=1000):
        name = key[len(prefix) :]
        if name.startswith(skip):
            continue
        kind = await redis.type(key)
        if kind == "string":
            state[name] = await redis.get(key)
        elif kind == "hash":
            state[name] = await redis.hgetall(key)
        elif kind == "set":
            state[name] = sorted(await redis.smembers(key))
        else:
            state[name] = kind
    return state


async def drop(redis: aioredis.Redis, prefix: str) -> None:
    keys = [k async for k in redis.scan_iter(match=f"{prefix}*", count=1000)]
    for i in range(0, len(keys), 500):
        await redis.unlink(*keys[i : i + 500])
