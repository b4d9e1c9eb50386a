"""Concurrent identical reads share one query: the read path's in-process caches expire every few seconds, and the
requests in flight at that moment (one per connection) would otherwise each send the same query for the same
missing entries."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class SingleFlight(Generic[V]):
    """`run(key, read)`: the answer of the `read` already running under `key`, else of a new one.

    The read runs as a task of its own, so a caller that goes away (its client disconnected) does not cancel it for
    the others; each caller gets its answer or its exception.
    """

    def __init__(self) -> None:
        self._running: dict[Hashable, asyncio.Future[V]] = {}

    async def run(self, key: Hashable, read: Callable[[], Awaitable[V]]) -> V:
        running = self._running.get(key)
        if running is None:
            running = self._running[key] = asyncio.ensure_future(read())
            running.add_done_callback(lambda done: self._forget(key, done))
        return await asyncio.shield(running)

    def _forget(self, key: Hashable, done: asyncio.Future[V]) -> None:
        if self._running.get(key) is done:
            del self._running[key]
        if not done.cancelled():
            done.exception()  # retrieved: a read whose callers all went away logs no "never retrieved" error
