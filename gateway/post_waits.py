"""Waiting for one's own write to reach the posts read model (`Prefer: wait`), on one subscription per process.

The posts consumer announces each post it made visible on `chirp:posts` and each post it removed on
`chirp:posts:deleted` (and each edit's render on `chirp:posts:edited`). One task per gateway process subscribes to
them while requests wait (and `IDLE_S` after the last one), and resolves the future of every request waiting for
that id. A request registers its future before it publishes, so the announcement cannot slip past it; whatever
happens (Redis away, the budget spent), the request falls back to asking the read model once, so a wait never
answers wrongly, at worst late.
Why not a Redis call per request (BLPOP on a marker): each would hold a pooled connection for up to the whole
budget, and a burst of writers would exhaust the pool that every other request shares.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from chirp.logging import get_logger
from store.posts import CHANNEL, DELETED_CHANNEL, EDITED_CHANNEL

log = get_logger("chirp.gateway")

IDLE_S = 30.0  # keep the subscription this long after the last waiter
RETRY_S = 0.5


class Seen:
    """A registered wait: `await seen(check)` says whether the write was seen by the deadline."""

    def __init__(self, future: asyncio.Future[None] | None, deadline: float) -> None:
        self._future, self._deadline = future, deadline

    async def __call__(self, check: Callable[[], Awaitable[bool]]) -> bool:
        """True once announced; at the deadline (or without a subscription) whatever `check()` says."""
        if self._future is None:  # the client did not ask to wait
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._future), max(0.0, self._deadline - time.monotonic()))
            return True
        return await check()


class PostWaits:
    """Futures of requests waiting for post ids on the posts channels, resolved by one subscriber task."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._waiting: dict[tuple[str, str], set[asyncio.Future[None]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    @contextlib.asynccontextmanager
    async def expecting(self, channel: str, post_id: str, seconds: float) -> AsyncIterator[Seen]:
        """Wait (up to `seconds`, from now) for `post_id` on `channel`; enter before publishing the write."""
        deadline = time.monotonic() + seconds
        if seconds <= 0:
            yield Seen(None, deadline)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        key = (channel, post_id)
        self._waiting.setdefault(key, set()).add(future)
        try:
            if self._task is None:
                self._task = asyncio.create_task(self._run())
            with contextlib.suppress(TimeoutError):  # subscribed before the write, so no announcement slips by
                await asyncio.wait_for(self._ready.wait(), seconds)
            yield Seen(future, deadline)
        finally:
            waiting = self._waiting.get(key, set())
            waiting.discard(future)
            if not waiting:
                self._waiting.pop(key, None)

    def _dispatch(self, channel: str, raw: str) -> None:
        try:
            post_id = str(orjson.loads(raw)["id"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return
        for future in self._waiting.get((channel, post_id), ()):
            if not future.done():
                future.set_result(None)

    async def _run(self) -> None:
        idle_since = time.monotonic()
        try:
            async with self._redis.pubsub() as pubsub:
                await pubsub.subscribe(CHANNEL, DELETED_CHANNEL, EDITED_CHANNEL)
                self._ready.set()
                while self._waiting or time.monotonic() - idle_since < IDLE_S:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message["type"] == "message":
                        self._dispatch(message["channel"], message["data"])
                    if self._waiting:
                        idle_since = time.monotonic()
        except (RedisError, OSError) as exc:
            log.warning("post waits lost Redis; waiting requests fall back to the read model", error=str(exc))
            await asyncio.sleep(RETRY_S)
        finally:
            self._ready.clear()
            # Requests may have registered while this subscription was closing: they get a fresh one.
            self._task = asyncio.create_task(self._run()) if self._waiting else None
