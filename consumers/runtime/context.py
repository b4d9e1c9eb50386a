"""The shared clients a handler receives, built once per process."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from faststream.kafka import KafkaBroker

from chirp import redis_client
from chirp.settings import Settings
from producers.broker import Publisher


@dataclass
class Context:
    """Shared clients a handler receives: the store pool, Redis, a publisher and the settings."""

    settings: Settings
    pg: asyncpg.Pool
    redis: aioredis.Redis
    publisher: Publisher
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def announcing(self) -> bool:
        """Whether Redis PUBLISH reaches subscribers. It does not while a replay builds a shadow copy (see
        ops/replay.py), so a handler can skip preparing announcements nobody receives."""
        return bool(getattr(self.redis, "announcing", True))


async def open_context(settings: Settings, broker: KafkaBroker) -> Context:
    from store.postgres import connect

    pg = await connect(settings)
    cache = redis_client.from_url(settings.redis_url, decode_responses=True)
    return Context(settings=settings, pg=pg, redis=cache, publisher=Publisher(broker))


async def close_context(ctx: Context) -> None:
    await ctx.pg.close()
    await ctx.redis.aclose()
