"""Redis clients of every process: redis-py's asyncio client, with its commands packed by hiredis."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import Connection
from redis.connection import HiredisRespSerializer


class HiredisPacking(Connection):
    """An asyncio connection whose commands hiredis packs into RESP, as redis-py's sync client does.

    redis-py's asyncio client packs every argument in Python even with hiredis installed (redis/redis-py#4176).
    That was most of a replay's CPU for scripts with many keys and arguments (trending, timelines). The bytes
    sent are the same.
    """

    _serializer = HiredisRespSerializer()

    def pack_command(self, *args: Any) -> list[bytes]:
        return self._serializer.pack(*args)  # type: ignore[no-any-return]


def from_url(url: str, **options: Any) -> aioredis.Redis:
    """`redis.asyncio.Redis.from_url` with `HiredisPacking` connections."""
    return aioredis.Redis.from_url(url, connection_class=HiredisPacking, **options)
