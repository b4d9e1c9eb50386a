"""The erasure key store in PostgreSQL (`erasure_keys`, migration 090), with a bounded in-process cache.

Keys never go to Kafka. A key is created when the first event sealed with it is published; erasing sets it to NULL
and keeps the row, so readers tell an erased key (its events are skipped) from a missing one (the key store was lost
or restored from an old backup: `KeyStoreIncomplete`, an outage that consumers wait out; docs/erasure.md).
Cached keys live at most `erasure_key_cache_s` seconds, so an erased key leaves every process's memory by then.
"""

from __future__ import annotations

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
WITH made AS (
    INSERT INTO erasure_keys (key_id, owner_id, key) VALUES ($1, $2, $3) ON CONFLICT (key_id) DO NOTHING
    RETURNING key)
SELECT key FROM made
UNION ALL SELECT key FROM erasure_keys WHERE key_id = $1
LIMIT 1"""


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

    @classmethod
    def from_settings(cls, settings: Settings, pool: asyncpg.Pool) -> PgKeyStore:
        return cls(pool, cache_s=settings.erasure_key_cache_s, lost_keys=settings.erasure_lost_keys)

    async def sealing_key(self, key_id: str, owner_id: str) -> bytes:
        """`key_id`'s key, created for `owner_id` if new; `KeyErased` once it was erased (nothing new is sealed)."""
        key = self.cache.get(key_id)
        if key is None:
            row = await self.pool.fetchrow(_CREATE, key_id, owner_id, new_key())
            if row is None:  # created meanwhile by another transaction, committed after this statement's snapshot
                row = await self.pool.fetchrow("SELECT key FROM erasure_keys WHERE key_id = $1", key_id)
            if row is None:
                raise KeyStoreIncomplete(f"key {key_id} was neither created nor found")
            key = bytes(row["key"]) if row["key"] is not None else ERASED
            self.cache[key_id] = key
        if key == ERASED:
            raise KeyErased(key_id)
        return key

    async def load(self, key_ids: Iterable[str], sealing: Iterable[str] = ()) -> dict[str, bytes]:
        """The keys of `key_ids` that exist (ERASED for erased ones), cached or read in one query.
        A key of `sealing` (one that sealed a record) that does not exist raises `KeyStoreIncomplete`."""
        wanted = set(key_ids) | set(sealing)
        found = {k: v for k in wanted if (v := self.cache.get(k)) is not None}
        missing = wanted - found.keys()
        if missing:
            rows = await self.pool.fetch(
                "SELECT key_id, key FROM erasure_keys WHERE key_id = ANY($1::text[])", list(missing)
            )
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
