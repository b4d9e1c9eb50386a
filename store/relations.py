"""Mutes and blocks between users, in Redis (written by consumers/relations.py, read by the gateway).

Keys (all under `chirp:rel:`, the prefix `chirp replay relations` rebuilds). `{user}` is the Redis Cluster hash
tag every model gives a user's keys, so one user's keys here, their timeline, notifications and suggestions share
a slot, and each script below touches one user's keys only:
- `chirp:rel:pairs:{user}`: hash `{kind}:{target}` -> `pair_state` of the newest mute/unmute or block/unblock
  applied, and `by:{blocker}` -> the same for blocks of `user` (last writer wins by occurred_at, so duplicates and
  out-of-order events leave the same state).
- `chirp:rel:mute:{user}`, `chirp:rel:block:{user}`: sorted sets of the users muted / blocked, scored by when (in
  microseconds): the pages of `GET /api/me/mutes` and `/api/me/blocks`, and "does A block B?" in one ZSCORE.
- `chirp:rel:blockedby:{user}`: sorted set of who blocks `user`, the other side of their block lists, so "blocked
  either way" is read from `user`'s own slot.
- `chirp:rel:hidden:{user}`: the set of users whose posts, reposts, replies and notifications `user` does not see:
  whom they mute, whom they block, and who blocks them. Kept by the scripts that change a pair, so a read path
  filters a whole page with one set (in a Lua script beside its other keys, or as an array in its SQL).
- `chirp:rel:version:{user}`: bumped whenever that user's hidden set may have changed. A gateway process keeps the
  sets it read with their version (`RedisRelations.hidden`), so a read checks the version (a few bytes, or a value
  its timeline script returns anyway) instead of transferring a thousand ids per request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

import redis.asyncio as aioredis

from store.timelines import pair_state

Kind = Literal["mute", "block"]
KINDS: tuple[Kind, ...] = ("mute", "block")
PREFIX = "chirp:rel:"


def pairs_key(user_id: str) -> str:
    return f"{PREFIX}pairs:{{{user_id}}}"


def list_key(kind: Kind, user_id: str) -> str:
    return f"{PREFIX}{kind}:{{{user_id}}}"


def blocked_by_key(user_id: str) -> str:
    return f"{PREFIX}blockedby:{{{user_id}}}"


def hidden_key(user_id: str) -> str:
    return f"{PREFIX}hidden:{{{user_id}}}"


def version_key(user_id: str) -> str:
    return f"{PREFIX}version:{{{user_id}}}"


def side_keys(user_id: str) -> list[str]:
    """One user's keys, as `_APPLY` takes them."""
    mute, block = list_key("mute", user_id), list_key("block", user_id)
    return [pairs_key(user_id), mute, block, blocked_by_key(user_id), hidden_key(user_id), version_key(user_id)]


def hidden_keys(user_id: str) -> tuple[str, str]:
    """The hidden set and its version, for scripts of other read models that filter by it."""
    return hidden_key(user_id), version_key(user_id)


@dataclass(frozen=True, slots=True)
class Change:
    """The state of one (user, kind, target) after an event."""

    user_id: str
    kind: Kind
    target_id: str
    active: bool
    at: datetime


def micros(at: datetime) -> int:
    """`at` as whole microseconds since the epoch (exact, unlike `timestamp()`)."""
    return (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


# One side of a pair: the user's own mute or block of `other` (field `{kind}:{other}`, list mute or block), or a
# block of the user by `other` (field `by:{other}`, list blockedby). Either way the user's hidden set then holds
# `other` exactly when they mute, block or are blocked by them, so a mute and a block undo independently.
# KEYS: pairs, mute, block, blockedby, hidden, version (one user's: one slot).
# ARGV: field, list index in KEYS (2, 3 or 4), other, state, micros.  A state not newer than the recorded one
# changes nothing.
_APPLY = """
local field, list, other, state, at = ARGV[1], KEYS[tonumber(ARGV[2])], ARGV[3], ARGV[4], ARGV[5]
local old = redis.call('HGET', KEYS[1], field)
if old and old >= state then return 0 end
redis.call('HSET', KEYS[1], field, state)
if string.sub(state, -1) == '1' then redis.call('ZADD', list, at, other) else redis.call('ZREM', list, other) end
if redis.call('ZSCORE', KEYS[2], other) or redis.call('ZSCORE', KEYS[3], other) or redis.call('ZSCORE', KEYS[4], other)
then redis.call('SADD', KEYS[5], other) else redis.call('SREM', KEYS[5], other) end
redis.call('INCR', KEYS[6])
return 1
"""


# KEYS: hidden, version.  ARGV: the version the caller holds.  {version} when it is current, else {version, members}.
_HIDDEN = """
local version = redis.call('GET', KEYS[2]) or '0'
if version == ARGV[1] then return {version} end
return {version, redis.call('SMEMBERS', KEYS[1])}
"""

CACHED_SETS = 10_000  # hidden sets a gateway process keeps (the oldest read goes first)


@dataclass(frozen=True, slots=True)
class RelationPage:
    user_ids: list[str]
    after: tuple[int, str] | None  # (micros, user id) to continue after, None on the last page


class RelationsReadModel(Protocol):
    """What the gateway reads about mutes and blocks."""

    async def hidden(self, user_id: str, version: str | None = None) -> frozenset[str]: ...
    async def blocked_either_way(self, user_id: str) -> list[str]: ...
    async def state(self, user_id: str, target_id: str) -> dict[str, bool]: ...
    async def blocks(self, user_id: str, target_id: str) -> bool: ...
    async def page(self, kind: Kind, user_id: str, after: tuple[int, str] | None, limit: int) -> RelationPage: ...


class RedisRelations:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._apply = redis.register_script(_APPLY)
        self._hidden = redis.register_script(_HIDDEN)
        self._sets: dict[str, tuple[str, frozenset[str]]] = {}  # user -> (version, hidden set) as last read

    async def apply(self, changes: Sequence[Change]) -> None:
        """Apply changes in one pipeline (each pair last-writer-wins, so their order does not matter)."""
        if not changes:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for c in changes:
                u, t, state, at = c.user_id, c.target_id, pair_state(c.at, c.active), micros(c.at)
                own: list[str | int] = [f"{c.kind}:{t}", 2 if c.kind == "mute" else 3, t, state, at]
                await self._apply(keys=side_keys(u), args=own, client=pipe)
                if c.kind == "block":  # a mute is private; a block hides the blocker from the blocked too
                    await self._apply(keys=side_keys(t), args=[f"by:{u}", 4, u, state, at], client=pipe)
            await pipe.execute()

    async def hidden(self, user_id: str, version: str | None = None) -> frozenset[str]:
        """Whom `user_id` does not see: muted, blocked, or blocking them. With `version` (the current one, read
        beside something else), a set kept at that version is served without asking Redis."""
        known = self._sets.get(user_id)
        if known is not None and version is not None and known[0] == version:
            return known[1]
        found = await self._hidden(keys=[hidden_key(user_id), version_key(user_id)], args=[known[0] if known else ""])
        current = str(found[0])
        members = known[1] if known is not None and len(found) == 1 else frozenset(str(m) for m in found[1])
        self._sets.pop(user_id, None)
        self._sets[user_id] = (current, members)
        if len(self._sets) > CACHED_SETS:
            del self._sets[next(iter(self._sets))]
        return members

    async def blocked_either_way(self, user_id: str) -> list[str]:
        """Whom `user_id` blocks or is blocked by (not whom they only mute), in one round trip."""
        found = await self.redis.zunion([list_key("block", user_id), blocked_by_key(user_id)])
        return [str(m) for m in found]

    async def state(self, user_id: str, target_id: str) -> dict[str, bool]:
        """`{"muted": …, "blocked": …, "blocks_me": …}` between a viewer and another user, in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zscore(list_key("mute", user_id), target_id)
            pipe.zscore(list_key("block", user_id), target_id)
            pipe.zscore(blocked_by_key(user_id), target_id)
            muted, blocked, blocks_me = await pipe.execute()
        return {"muted": muted is not None, "blocked": blocked is not None, "blocks_me": blocks_me is not None}

    async def blocks(self, user_id: str, target_id: str) -> bool:
        """Does `user_id` block `target_id`?"""
        return await self.redis.zscore(list_key("block", user_id), target_id) is not None

    async def page(self, kind: Kind, user_id: str, after: tuple[int, str] | None, limit: int) -> RelationPage:
        """Whom a user mutes / blocks, newest first, after (micros, user id) of the last one served."""
        key = list_key(kind, user_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            if after is None:
                pipe.zrange(key, "+inf", "-inf", desc=True, byscore=True, offset=0, num=limit + 1, withscores=True)
            else:  # ties of the cursor's instant (members descending), then what is older
                pipe.zrange(key, after[0], after[0], desc=True, byscore=True, withscores=True)
                pipe.zrange(
                    key, f"({after[0]}", "-inf", desc=True, byscore=True, offset=0, num=limit + 1, withscores=True
                )
            found = await pipe.execute()
        rows: list[tuple[str, int]] = [(str(m), int(s)) for part in found for m, s in part]
        if after is not None:
            rows = [(m, s) for m, s in rows if s < after[0] or m < after[1]]
        more = len(rows) > limit
        rows = rows[:limit]
        return RelationPage([m for m, _ in rows], (rows[-1][1], rows[-1][0]) if more else None)
