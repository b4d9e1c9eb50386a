"""One process per group for consumers that must not run side by side (`Consumer(single_process=True)`).

Such a consumer keeps state between events in its process (the suggestions consumer applies follow edges one at a
time under an asyncio lock: two processes would each apply edges while the other's are half written). A process
that runs it holds a lease in Redis, `chirp:lease:<group>`, renewed every few seconds; a second process of the same
group finds the lease held and refuses to start, naming the holder. A holder that dies without releasing leaves
the lease for `LEASE_S` at most, then another process may start.
"""

from __future__ import annotations

import asyncio
import os
import socket

import redis.asyncio as aioredis

LEASE_S = 15
RENEW_S = 5.0

# KEYS: lease.  ARGV: holder, ms.  Renews (1) only if we still hold it; 0 when someone else does or it lapsed.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class LeaseHeld(RuntimeError):
    """Another process runs this single-process consumer group."""


def lease_key(group: str) -> str:
    return f"chirp:lease:{{{group}}}"


class Lease:
    """The lease of one group, held from `acquire` until `release`, renewed meanwhile."""

    def __init__(self, redis: aioredis.Redis, group: str) -> None:
        self.redis, self.key = redis, lease_key(group)
        self.holder = f"{socket.gethostname()}:{os.getpid()}"
        self._task: asyncio.Task[None] | None = None

    async def acquire(self) -> None:
        if not await self.redis.set(self.key, self.holder, nx=True, ex=LEASE_S):
            holder = await self.redis.get(self.key)
            raise LeaseHeld(
                f"{self.key} is held by {holder!r}: this consumer runs as one process per group"
                f" (a stopped holder frees it at once, a dead one within {LEASE_S} s)"
            )
        self._task = asyncio.create_task(self._renew())

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(RENEW_S)
            try:
                await self.redis.eval(_RENEW, 1, self.key, self.holder, LEASE_S * 1000)  # type: ignore[misc]
            except aioredis.RedisError:
                continue  # Redis away for a moment: the next renewal may still be in time

    async def release(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
            await self.redis.eval(_RELEASE, 1, self.key, self.holder)  # type: ignore[misc]
