"""The erasure key store in PostgreSQL (`erasure_keys`, migration 090), with a bounded in-process cache.

Keys never go to Kafka. A key is created when the first event sealed with it is published; erasing sets it to NULL
and keeps the row, so readers tell an erased key (its events are skipped) from a missing one (the key store was lost
or restored from an old backup: `KeyStoreIncomplete`, an outage that consumers wait out; docs/erasure.md).
Cached keys live at most `erasure_key_cache_s` seconds, so an erased key leaves every process's memory by then.
Keys asked for while an insert is under way are created together by the next one (one commit for many posts).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import datetime
from typing import Literal

import asyncpg
from cachetools import TTLCache

from chirp.outages import KeyStoreIncomplete
from chirp.settings import Settings
from producers.sealing import ERASED_KEY as ERASED
from producers.sealing import KeyErased, new_key

_CREATE = """
INSERT INTO erasure_keys (key_id, owner_id, key) SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[])
ON CONFLICT (key_id) DO NOTHING
RETURNING key_id, key"""
_FIND = "SELECT key_id, key FROM erasure_keys WHERE key_id = ANY($1::text[])"


class PgKeyStore:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        cache_s: float = 60.0,
        cache_size: int = 100_000,
        lost_keys: Literal["wait", "skip"] = "wait",
    ) -> None:
        self.pool = pool
        self.lost_keys = lost_keys
        self.cache: TTLCache[str, bytes] = TTLCache(maxsize=cache_size, ttl=cache_s)
        self._asked: dict[str, tuple[str, asyncio.Future[bytes]]] = {}  # key id -> (owner, its key once made)
        self._creating: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, pool: asyncpg.Pool) -> PgKeyStore:
        return cls(pool, cache_s=settings.erasure_key_cache_s, lost_keys=settings.erasure_lost_keys)

    @classmethod
    def for_sealing(cls, settings: Settings, pool: asyncpg.Pool) -> PgKeyStore | None:
        """The key store publishers seal with; None (events in clear) when `erasure_seal` is off."""
        return cls.from_settings(settings, pool) if settings.erasure_seal else None

    async def sealing_key(self, key_id: str, owner_id: str) -> bytes:
        """`key_id`'s key, created for `owner_id` if new; `KeyErased` once it was erased (nothing new is sealed)."""
        key = self.cache.get(key_id)
        if key is None:
            if key_id not in self._asked:
                self._asked[key_id] = (owner_id, asyncio.get_running_loop().create_future())
            if self._creating is None or self._creating.done():
                self._creating = asyncio.create_task(self._create())
            key = await asyncio.shield(self._asked[key_id][1])
        if key == ERASED:
            raise KeyErased(key_id)
        return key

    async def _create(self) -> None:
        """Insert every key asked for, one statement per round, until none is waiting."""
        while self._asked:
            asked, self._asked = self._asked, {}
            try:
                ids = list(asked)
                rows = await self.pool.fetch(_CREATE, ids, [o for o, _ in asked.values()], [new_key() for _ in ids])
                found = {r["key_id"]: r["key"] for r in rows}
                if len(found) < len(ids):  # existing keys (or ones committed after the insert's snapshot)
                    found.update({r["key_id"]: r["key"] for r in await self.pool.fetch(_FIND, ids)})
            except Exception as exc:  # every waiter gets it
                for _, waiter in asked.values():
                    if not waiter.done():
                        waiter.set_exception(exc)
                continue
            for key_id, (_, waiter) in asked.items():
                if key_id not in found:
                    waiter.set_exception(KeyStoreIncomplete(f"key {key_id} was neither created nor found"))
                    continue
                key = bytes(found[key_id]) if found[key_id] is not None else ERASED
                self.cache[key_id] = key
                if not waiter.done():
                    waiter.set_result(key)

    async def load(self, key_ids: Iterable[str], sealing: Iterable[str] = ()) -> dict[str, bytes]:
        """The keys of `key_ids` that exist (ERASED for erased ones), cached or read in one query.
        A key of `sealing` (one that sealed a record) that does not exist raises `KeyStoreIncomplete`."""
        wanted = set(key_ids) | set(sealing)
        found = {k: v for k in wanted if (v := self.cache.get(k)) is not None}
        missing = wanted - found.keys()
        if missing:
            rows = await self.pool.fetch(_FIND, list(missing))
            for row in rows:
                key = bytes(row["key"]) if row["key"] is not None else ERASED
                found[row["key_id"]] = self.cache[row["key_id"]] = key
        absent = sorted(k for k in sealing if k not in found)
        if absent and self.lost_keys == "skip":  # a store thrown away on purpose (a test stack): read as erased
            found.update(dict.fromkeys(absent, ERASED))
        elif absent:
            raise KeyStoreIncomplete(f"{len(absent)} sealing keys are not in the key store, e.g. {absent[0]}")
        return found

    async def erase(self, target: str, *, at: datetime) -> int:
        """Delete the keys `target` names: a user key takes every key that user owns; returns how many went."""
        owner = target.removeprefix("u:") if target.startswith("u:") else None
        erased = await self.pool.fetchval(
            """WITH gone AS (
                   UPDATE erasure_keys SET key = NULL, erased_at = $3
                   WHERE key IS NOT NULL AND (key_id = $1 OR owner_id = $2) RETURNING 1)
               SELECT count(*) FROM gone""",
            target,
            owner,
            at,
        )
        # An erased key that was never used still blocks sealing with it later (a late event of a deleted post).
        await self.pool.execute(
            "INSERT INTO erasure_keys (key_id, owner_id, erased_at) VALUES ($1, coalesce($2, ''), $3)"
            " ON CONFLICT (key_id) DO NOTHING",
            target,
            owner,
            at,
        )
        self.forget()
        return int(erased or 0)

    def forget(self) -> None:
        self.cache.clear()
