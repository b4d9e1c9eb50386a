"""Home timelines: a Redis sorted set of post ids per user, filled on write, rebuilt from PostgreSQL when cold.

Keys (`{user}` and `{author}` are Redis Cluster hash tags: a user's keys, and their hidden set of
store/relations.py that the window script reads, share one slot):
- `chirp:tl:home:{user}`: every score is 0 and members are `{post_id}:{author_id}`, so the set is in lexicographic order
  of ULID post ids, which is time order. `ZRANGE BYLEX REV` with an exclusive bound pages newest first without the
  ties a millisecond score has; the author in the member lets an unfollow remove that author's posts without a second
  structure. The member `~` sorts after every post and marks a timeline *built* from the store: a set without it only
  holds what writes added since and the read path rebuilds it. The member `!` sorts before every post and marks a
  rebuild under way (set before the rebuild reads the store, so no write in between is lost).
- `chirp:tl:big:{user}`: authors the user follows whose posts are not fanned out (merged at read time).
- `chirp:tl:pairs:{user}`: followee -> `pair_state` of the newest follow/unfollow applied (last writer wins).
- `chirp:tl:recent:{author}`: follower -> `pair_state`, the follow events of the last minutes that the follows table
  (another consumer's projection) did not show yet when applied: for its own pair an event is the truth. Events the
  projection already showed only update an entry that is there, so a replay behind a rebuilt projection keeps
  these hashes empty instead of copying every follow into them.
- `chirp:tl:fresh:{author}`: the author's posts of the last minutes that the posts table (another consumer's
  projection) did not show yet when fanned out: a rebuild adds them to what it reads from the table.
- `chirp:tl:big-authors`: authors currently not fanned out (more than `fanout_max_followers` followers).
- `chirp:tl:homes`: set (before it) by everything that creates a timeline. Without it no timeline exists, as in a
  replay's shadow copy, and fan-out needs no follower lists. Timelines older than the marker are adopted (the marker
  set) when the consumer starts.
A timeline lives `TTL_S` after its last read, so inactive users stop costing memory and are rebuilt on return.
Fan-out writes only into timelines that exist (read in the last `TTL_S`, or being rebuilt): a missing one is rebuilt
from the store when read, so writing to it would be wasted, and a replay (which starts with none) only rebuilds the
follow state. So that a rebuild misses nothing the store does not show yet, a post the posts table lacks is kept in
its author's `fresh` set for `FRESH_TTL_S`, and a follow the follows table lacks is backfilled even into a missing
timeline, created to expire after `FRESH_TTL_S` unless a rebuild adopts it.
Every key is under `chirp:tl:` (the prefix `chirp replay` rebuilds) and scripts touch only the keys they are given.
A script over many timelines takes keys of one slot per call on a cluster (`slot_chunks`).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript
from ulid import ULID

from chirp.redis_client import evalsha_of, slot_chunks
from chirp.single_flight import SingleFlight
from store.posts import PostgresPosts, PostReadModel, PostView
from store.users import FollowChange

BUILT = "~"
BUILDING = "!"
TTL_S = 14 * 86400
RECENT_TTL_S = 300  # far longer than the users or posts projection ever lags
FRESH_TTL_S = RECENT_TTL_S  # what the store did not show yet is kept this long: by then it does
GLOBAL_BIG = "chirp:tl:big-authors"
HOMES = "chirp:tl:homes"
_CHUNK = 2000  # commands per pipeline round trip
_KEYS_PER_CALL = 500  # timelines per fan-out script call: about a millisecond of Redis time
_MEMBERS_PER_ROUND_TRIP = 50_000  # fan-out members sent before the pipeline is flushed


def _state(change: FollowChange) -> str:
    return pair_state(change.at, change.active)


def timeline_key(user_id: str) -> str:
    return f"chirp:tl:home:{{{user_id}}}"


def big_key(user_id: str) -> str:
    return f"chirp:tl:big:{{{user_id}}}"


def pairs_key(user_id: str) -> str:
    return f"chirp:tl:pairs:{{{user_id}}}"


def recent_key(author_id: str) -> str:
    return f"chirp:tl:recent:{{{author_id}}}"


def fresh_key(author_id: str) -> str:
    return f"chirp:tl:fresh:{{{author_id}}}"


def lock_key(user_id: str) -> str:
    return f"chirp:tl:lock:{{{user_id}}}"


def member(post_id: str, author_id: str) -> str:
    return f"{post_id}:{author_id}"


def author_of(value: str) -> str:
    return value.split(":", 1)[1]


def post_id_of(value: str) -> str:
    return value.split(":", 1)[0]


def ulid_floor(seconds: float) -> str:
    """The smallest ULID of that instant: every post id created since sorts after it."""
    return str(ULID.from_bytes(int(seconds * 1000).to_bytes(6, "big") + bytes(10)))


def pair_state(at: datetime, active: bool) -> str:
    """A pair's state after an event: fixed-width UTC time then 1/0, so string order is time order (compared in
    Lua too), and at the very same microsecond a follow wins over an unfollow, whatever the order of arrival."""
    return at.astimezone(UTC).strftime("%Y%m%d%H%M%S%f") + ("1" if active else "0")


def is_active(state: str) -> bool:
    return state.endswith("1")


def followed(projected: Mapping[str, tuple[str, int]], applied: Mapping[str, str]) -> dict[str, int]:
    """Whom a user follows (followee -> follower count, 0 when unknown): for each pair, the newer of the projected
    row (state, followers) and the last event this consumer applied."""
    found = {}
    for followee in projected.keys() | applied.keys():
        state, followers = projected.get(followee, ("", 0))
        if is_active(max(state, applied.get(followee, ""))):
            found[followee] = followers
    return found


@dataclass(frozen=True, slots=True)
class Window:
    """One page read from Redis: up to limit+1 member ids after the cursor, and the big authors to merge."""

    post_ids: list[str]
    big_authors: list[str]
    hidden_version: str  # of the set of authors the user does not see (left out of the two lists above)


# Lua: one command does a whole step, for one timeline or (fan-out) for hundreds.
# KEYS: timelines.  ARGV: length, TTL, '1' to create missing timelines (expiring in ARGV[4]) or '0' to skip them,
# then for each key a JSON array of its members (one argument per timeline keeps the client's protocol encoding
# short; ZADD takes up to 1,000 members per call).  Returns how many timelines were written.
_ADD = """
local length, ttl, create, fresh_ttl = tonumber(ARGV[1]), ARGV[2], ARGV[3] == '1', ARGV[4]
local written = 0
for k = 1, #KEYS do
  local missing = redis.call('EXISTS', KEYS[k]) == 0
  if create or not missing then
    local members = cjson.decode(ARGV[k + 4])
    for first = 1, #members, 1000 do
      local args = {}
      for j = first, math.min(first + 999, #members) do
        args[#args + 1] = 0
        args[#args + 1] = members[j]
      end
      redis.call('ZADD', KEYS[k], unpack(args))
    end
    redis.call('ZREMRANGEBYRANK', KEYS[k], 0, -(length + 2))
    if missing then redis.call('EXPIRE', KEYS[k], fresh_ttl) else redis.call('EXPIRE', KEYS[k], ttl, 'NX') end
    written = written + 1
  end
end
return written
"""

# KEYS: any.  Returns 1 or 0 per key: does it exist?
_EXISTING = """
local found = {}
for k = 1, #KEYS do found[k] = redis.call('EXISTS', KEYS[k]) end
return found
"""

# KEYS: recent-follow hashes. Each one's HGETALL, in one call (per-key commands cost more than the reads).
_HASHES = """
local found = {}
for k = 1, #KEYS do found[k] = redis.call('HGETALL', KEYS[k]) end
return found
"""

# KEYS: pair hashes. ARGV: per key, a count n then n fields. Their values (false: none), flat, in that order.
_FIELDS = """
local found, a = {}, 1
for k = 1, #KEYS do
    local n = tonumber(ARGV[a])
    for _, value in ipairs(redis.call('HMGET', KEYS[k], unpack(ARGV, a + 1, a + n))) do found[#found + 1] = value end
    a = a + n + 1
end
return found
"""

# KEYS: timelines.  ARGV: the member to remove from each.
_REMOVE = """
for k = 1, #KEYS do redis.call('ZREM', KEYS[k], ARGV[1]) end
return #KEYS
"""

# KEYS: timeline, big, pairs, then the set of authors the user does not see and its version (store/relations.py).
# ARGV: start, how many ids, TTL.  Returns false when cold, else {ids, big authors, version of the hidden set}: the
# ids and big authors without the hidden ones (read on until the window is full), so a muted or blocked author costs
# the page nothing, and the reader needs the hidden set itself only when its version is not the one it holds.
_WINDOW = """
if not redis.call('ZSCORE', KEYS[1], '~') then return false end
local want = tonumber(ARGV[2])
local ids, big = {}, redis.call('SMEMBERS', KEYS[2])
if redis.call('SCARD', KEYS[4]) == 0 then
  ids = redis.call('ZRANGE', KEYS[1], ARGV[1], '(!', 'BYLEX', 'REV', 'LIMIT', 0, want)
else
  local start = ARGV[1]
  while #ids < want do
    local chunk = redis.call('ZRANGE', KEYS[1], start, '(!', 'BYLEX', 'REV', 'LIMIT', 0, want)
    for _, m in ipairs(chunk) do
      local sep = string.find(m, ':', 1, true)
      if not (sep and redis.call('SISMEMBER', KEYS[4], string.sub(m, sep + 1)) == 1) then
        ids[#ids + 1] = m
        if #ids == want then break end
      end
    end
    if #chunk < want then break end
    start = '(' .. chunk[#chunk]
  end
  local shown = {}
  for _, a in ipairs(big) do
    if redis.call('SISMEMBER', KEYS[4], a) == 0 then shown[#shown + 1] = a end
  end
  big = shown
end
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[3]) end
return {ids, big, redis.call('GET', KEYS[5]) or '0'}
"""

_DROP_AUTHOR = """
local n = 0
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local sep = string.find(m, ':', 1, true)
  if sep and string.sub(m, sep + 1) == ARGV[1] then
    redis.call('ZREM', KEYS[1], m)
    n = n + 1
  end
end
redis.call('SREM', KEYS[2], ARGV[1])
return n
"""

# KEYS: pair hashes (a key may repeat).  ARGV: for each key a field, its new state, a TTL and a mode: NX (set the
# TTL only if none), XX (reset it) or KNOWN (update only a field already there, resetting the TTL). A state older
# than the one recorded is ignored.
_RECORD_PAIRS = """
for k = 1, #KEYS do
  local i = (k - 1) * 4
  local field, state, ttl, mode = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local old = redis.call('HGET', KEYS[k], field)
  if not (old and old >= state) and (old or mode ~= 'KNOWN') then
    redis.call('HSET', KEYS[k], field, state)
    if mode == 'NX' then redis.call('EXPIRE', KEYS[k], ttl, 'NX') else redis.call('EXPIRE', KEYS[k], ttl) end
  end
end
return #KEYS
"""


def page_of(rows: list[PostView], window_ids: list[str], limit: int) -> tuple[list[PostView], str | None]:
    """Cut the page from live rows (newest first) merged from a Redis window of up to limit+1 ids and big authors.

    Redis may still hold ids the store no longer serves (deleted, not projected yet), so the page only goes down
    to the lowest id Redis returned when Redis has more: nothing past it was fetched, so nothing past it is served.
    """
    lower = window_ids[limit] if len(window_ids) > limit else None
    live = [r for r in rows if lower is None or r.id >= lower]
    page = live[:limit]
    more = len(live) > limit or lower is not None
    if not more:
        return page, None
    return page, page[-1].id if page else lower


def window_of(found: list[Any] | None) -> Window | None:
    """The window in the window script's reply (None: the timeline is cold)."""
    if found is None:
        return None
    members, big, version = found
    return Window([post_id_of(m) for m in members], list(big), str(version))


class RedisTimelines:
    """Timelines in Redis (see the module docstring for the keys)."""

    def __init__(self, redis: aioredis.Redis, length: int) -> None:
        self.redis = redis
        self.length = length
        self._add = redis.register_script(_ADD)
        self._remove = redis.register_script(_REMOVE)
        self._window = redis.register_script(_WINDOW)
        self._drop_author = redis.register_script(_DROP_AUTHOR)
        self._record_pairs = redis.register_script(_RECORD_PAIRS)
        self._existing = redis.register_script(_EXISTING)
        self._hashes = redis.register_script(_HASHES)
        self._fields = redis.register_script(_FIELDS)

    async def window(self, user_id: str, cursor: str | None, limit: int, hidden_keys: tuple[str, str]) -> Window | None:
        """Up to limit+1 post ids older than `cursor` and the big authors to merge, both without the authors in the
        set `hidden_keys[0]` (whose version, `hidden_keys[1]`, comes back too); None when the timeline is cold."""
        keys, args = self._window_call(user_id, cursor, limit, hidden_keys)
        return window_of(await self._window(keys=keys, args=args))

    def queue_window(
        self, pipe: Pipeline, user_id: str, cursor: str | None, limit: int, hidden_keys: tuple[str, str]
    ) -> None:
        """`window` as a command on a pipeline (`chirp.redis_client.pipelined`, with `scripts`): `window_of` reads
        its reply."""
        evalsha_of(pipe, self._window, *self._window_call(user_id, cursor, limit, hidden_keys))

    @property
    def scripts(self) -> tuple[AsyncScript, ...]:
        """The scripts `queue_window` calls."""
        return (self._window,)

    @staticmethod
    def _window_call(
        user_id: str, cursor: str | None, limit: int, hidden_keys: tuple[str, str]
    ) -> tuple[list[str], list[str | int]]:
        keys = [timeline_key(user_id), big_key(user_id), pairs_key(user_id), *hidden_keys]
        return keys, [f"({cursor}" if cursor else f"({BUILT}", limit + 1, TTL_S]

    async def add(self, posts_by_timeline: Mapping[str, Iterable[str]], *, create: bool) -> None:
        """Add members to each user's timeline, trimmed to the newest `length`; a missing timeline is created
        (expiring in `FRESH_TTL_S`) when `create`, else left missing.

        One script call per `_KEYS_PER_CALL` timelines (Redis serves other clients between calls), all in one
        pipeline: a post to 5,000 followers is ten commands, not fifteen thousand.
        """
        items = [(user, list(values)) for user, values in posts_by_timeline.items() if values]
        if not items:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            if create:
                pipe.set(HOMES, 1)
            pending = 0
            for chunk in slot_chunks(self.redis, items, lambda item: timeline_key(item[0]), _KEYS_PER_CALL):
                members = (orjson.dumps(values).decode() for _, values in chunk)
                args: list[str | int] = [self.length, TTL_S, "1" if create else "0", FRESH_TTL_S, *members]
                await self._add(keys=[timeline_key(user) for user, _ in chunk], args=args, client=pipe)
                pending += sum(len(values) for _, values in chunk)
                if pending >= _MEMBERS_PER_ROUND_TRIP:  # the encoded commands stay a few MB, whatever the batch
                    await pipe.execute()
                    pending = 0
            await pipe.execute()

    async def remove(self, removals: Iterable[tuple[str, Iterable[str]]]) -> None:
        """Remove each (member, users) pair's member from those users' timelines and from its author's fresh posts,
        in one pipeline."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for value, timelines in removals:
                pipe.zrem(fresh_key(author_of(value)), value)
                keys = [timeline_key(user) for user in timelines]
                for chunk in slot_chunks(self.redis, keys, str, _KEYS_PER_CALL):
                    await self._remove(keys=chunk, args=[value], client=pipe)
            await pipe.execute()

    async def drop_authors(self, pairs: Iterable[tuple[str, str]]) -> None:
        """After unfollows (user, author): the author's posts leave the user's timeline, the author its big set."""
        items = list(pairs)
        for i in range(0, len(items), _CHUNK):
            async with self.redis.pipeline(transaction=False) as pipe:
                for user, author in items[i : i + _CHUNK]:
                    await self._drop_author(keys=[timeline_key(user), big_key(user)], args=[author], client=pipe)
                await pipe.execute()

    async def add_big(self, authors_by_user: Mapping[str, Iterable[str]]) -> None:
        """Merge these authors' posts at read time for these users."""
        items = [(user, list(authors)) for user, authors in authors_by_user.items()]
        for i in range(0, len(items), _CHUNK):
            async with self.redis.pipeline(transaction=False) as pipe:
                for user, authors in items[i : i + _CHUNK]:
                    if authors:
                        pipe.sadd(big_key(user), *authors)
                        pipe.expire(big_key(user), TTL_S, nx=True)
                await pipe.execute()

    async def newer_pairs(self, changes: list[FollowChange]) -> list[bool]:
        """For each change: is it newer than what was applied to that pair?"""
        by_follower: dict[str, list[int]] = {}
        for i, change in enumerate(changes):
            by_follower.setdefault(change.follower_id, []).append(i)
        groups = list(by_follower.items())
        applied: list[str | None] = [None] * len(changes)
        for chunk in slot_chunks(self.redis, groups, lambda group: pairs_key(group[0]), _CHUNK):
            args: list[str | int] = []
            for _, indices in chunk:
                args += [len(indices), *(changes[i].followee_id for i in indices)]
            states = iter(await self._fields(keys=[pairs_key(follower) for follower, _ in chunk], args=args))
            for _, indices in chunk:
                for i in indices:
                    applied[i] = next(states)
        return [old is None or old < _state(c) for old, c in zip(applied, changes, strict=True)]

    async def record_pairs(self, changes: list[FollowChange], projected: Iterable[bool]) -> None:
        """Remember these changes as applied (a newer one already recorded is kept), per follower and per followee;
        `projected` says, per change, whether the follows table showed it already (then no recent entry is made)."""
        entries: list[tuple[str, list[str | int]]] = []  # (pair hash, its field, state, TTL and mode)
        for c, shown in zip(changes, projected, strict=True):
            state = _state(c)
            entries.append((pairs_key(c.follower_id), [c.followee_id, state, TTL_S, "NX"]))
            mode = "KNOWN" if shown else "XX"
            entries.append((recent_key(c.followee_id), [c.follower_id, state, RECENT_TTL_S, mode]))
        async with self.redis.pipeline(transaction=False) as pipe:
            for chunk in slot_chunks(self.redis, entries, lambda entry: entry[0], _KEYS_PER_CALL):
                args = [arg for _, four in chunk for arg in four]
                await self._record_pairs(keys=[key for key, _ in chunk], args=args, client=pipe)
            await pipe.execute()

    async def applied_pairs(self, user_id: str) -> dict[str, str]:
        """followee -> state of the last follow event applied to this user's timeline."""
        return {str(k): str(v) for k, v in (await self.redis.hgetall(pairs_key(user_id))).items()}

    async def recent_followers(self, authors: Iterable[str]) -> dict[str, dict[str, bool]]:
        """author -> {follower: following?} from the follow events of the last `RECENT_TTL_S` seconds."""
        names = list(authors)
        recent: dict[str, dict[str, bool]] = {}
        for chunk in slot_chunks(self.redis, names, recent_key, _CHUNK):
            found = await self._hashes(keys=[recent_key(author) for author in chunk])
            for author, flat in zip(chunk, found, strict=True):
                recent[author] = {str(f): is_active(str(s)) for f, s in zip(flat[::2], flat[1::2], strict=True)}
        return recent

    async def mark_big(self, author_id: str) -> bool:
        """Record that the author is not fanned out; True when that is new."""
        return bool(await self.redis.sadd(GLOBAL_BIG, author_id))

    async def unmark_big(self, author_ids: Iterable[str]) -> None:
        """These authors are fanned out (again)."""
        authors = list(author_ids)
        if authors:
            await self.redis.srem(GLOBAL_BIG, *authors)

    async def all_big(self) -> set[str]:
        """Authors currently not fanned out."""
        return {str(author) for author in await self.redis.smembers(GLOBAL_BIG)}

    async def any_exist(self) -> bool:
        """Whether any timeline may exist (False: none was ever created under this prefix)."""
        return bool(await self.redis.exists(HOMES))

    async def adopt_unmarked(self) -> bool:
        """Set `homes` where timelines exist without it (made before it was kept), so fan-out reaches them; True if
        it was missing and is set now. Without `homes` this SCANs for a timeline key: for a consumer's start."""
        if await self.any_exist():
            return False
        async for _ in self.redis.scan_iter(match="chirp:tl:home:{*", count=1000):
            await self.redis.set(HOMES, 1)
            return True
        return False

    async def existing(self, user_ids: Iterable[str]) -> set[str]:
        """Which of these users have a timeline (built, being rebuilt, or holding fresh writes)."""
        users = list(set(user_ids))
        found: set[str] = set()
        for chunk in slot_chunks(self.redis, users, timeline_key, _CHUNK):  # one script call: thousands of keys
            flags = await self._existing(keys=[timeline_key(user) for user in chunk])
            found.update(user for user, flag in zip(chunk, flags, strict=True) if flag)
        return found

    async def remember_fresh(self, values_by_author: Mapping[str, list[str]]) -> None:
        """Keep these posts (the posts table lacks them) for `FRESH_TTL_S`, for rebuilds to add."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for author, values in values_by_author.items():
                pipe.zadd(fresh_key(author), dict.fromkeys(values, 0))
                pipe.zremrangebyrank(fresh_key(author), 0, -(self.length + 1))
                pipe.expire(fresh_key(author), FRESH_TTL_S)
            await pipe.execute()

    async def fresh(self, authors: Iterable[str]) -> list[str]:
        """The fresh posts of these authors (see `remember_fresh`)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for author in authors:
                pipe.zrange(fresh_key(author), 0, -1)
            found = await pipe.execute()
        return [str(value) for values in found for value in values]

    async def prepare(self, user_id: str) -> None:
        """Mark a rebuild under way (before it reads the store): fan-out writes reach the timeline from now on."""
        await self.redis.set(HOMES, 1)  # before the timeline exists; not in its transaction (another slot)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(timeline_key(user_id), {BUILDING: 0})
            pipe.expire(timeline_key(user_id), FRESH_TTL_S, nx=True)
            await pipe.execute()

    async def build(self, user_id: str, values: list[str], big: Iterable[str]) -> None:
        """Merge a rebuild from the store into the timeline and mark it built (writes since are kept)."""
        keys = [timeline_key(user_id), big_key(user_id)]
        authors = list(big)
        await self.redis.set(HOMES, 1)  # before the timeline is built; not in its transaction (another slot)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(keys[0], {value: 0 for value in [*values, BUILT]})
            pipe.zrem(keys[0], BUILDING)
            pipe.zremrangebyrank(keys[0], 0, -(self.length + 2))
            if authors:
                pipe.sadd(keys[1], *authors)
            for key in keys:
                pipe.expire(key, TTL_S)
            await pipe.execute()

    async def lock(self, user_id: str, seconds: int = 30) -> bool:
        """Take the rebuild lock of one timeline (one rebuild at a time across gateway processes)."""
        return bool(await self.redis.set(lock_key(user_id), "1", nx=True, ex=seconds))

    async def unlock(self, user_id: str) -> None:
        await self.redis.delete(lock_key(user_id))


# PostgreSQL ------------------------------------------------------------------------------------------------

_FOLLOWERS = """
SELECT a.author_id, f.follower_id FROM unnest($1::text[]) AS a(author_id), LATERAL (
    SELECT follower_id FROM follows WHERE followee_id = a.author_id AND active LIMIT $2) f"""

# The projected follower count settles big authors without fetching thousands of follower ids per post.
_FANOUT_TARGETS = """
SELECT a.author_id, coalesce(u.followers_count, 0) AS projected, ARRAY(
    SELECT follower_id FROM follows WHERE followee_id = a.author_id AND active
    LIMIT CASE WHEN coalesce(u.followers_count, 0) > $2 THEN 0 ELSE $2 + 1 END) AS followers
FROM unnest($1::text[]) AS a(author_id)
LEFT JOIN users u ON u.user_id = a.author_id"""

_PAIR_STATES = """
SELECT f.follower_id, f.followee_id, f.active, f.changed_at
FROM unnest($1::text[], $2::text[]) AS p(follower_id, followee_id)
JOIN follows f USING (follower_id, followee_id)"""

_FOLLOWEES = """
SELECT f.followee_id, f.active, f.changed_at, coalesce(u.followers_count, 0) AS followers
FROM follows f LEFT JOIN users u ON u.user_id = f.followee_id
WHERE f.follower_id = $1"""


# The authors `_FANOUT_TARGETS` finds too big, without their follower lists: a user's row holds the exact count;
# follows of someone not registered yet are counted (up to the limit).
_BIG_AUTHORS = """
SELECT a.author_id FROM unnest($1::text[]) AS a(author_id)
LEFT JOIN users u ON u.user_id = a.author_id
WHERE CASE WHEN u.user_id IS NOT NULL THEN u.followers_count > $2
      ELSE (SELECT count(*) FROM (SELECT FROM follows WHERE followee_id = a.author_id AND active LIMIT $2 + 1) f) > $2
      END"""


class PostgresTimelineSource:
    """What timelines are made of: follows and users from PostgreSQL, posts from the posts read model (on the
    configured store; PostgreSQL's own when none is given)."""

    def __init__(self, pool: asyncpg.Pool, posts: PostReadModel | None = None) -> None:
        self.pool = pool
        self.posts = posts or PostgresPosts(pool)

    async def items(self, post_ids: list[str], authors: list[str], before: str | None, limit: int) -> list[PostView]:
        """Live posts among `post_ids` and the newest of `authors` before `before`, newest first, at most `limit`."""
        return await self.posts.timeline_items(post_ids, authors, before, limit)

    async def recent(self, authors: Iterable[str], per_author: int) -> dict[str, list[str]]:
        """Each author's newest `per_author` live post ids, newest first."""
        return await self.posts.recent_ids(list(authors), per_author)

    async def newest(self, authors: list[str], total: int) -> list[tuple[str, str]]:
        """(post_id, author_id) of the newest `total` live posts of all these authors together, newest first.

        Looks back one day, then 8, 64, 512, then forever, so following thousands of prolific accounts reads about
        `total` rows, not each one's newest `total`.
        """
        days, now = 1, time.time()
        while True:
            since = ulid_floor(now - days * 86400) if days <= 512 else ""
            found = await self.posts.newest_ids(authors, since, total)
            if len(found) >= total or not since:
                return found
            days *= 8

    async def followers(self, authors: Iterable[str], at_most: int | None = None) -> dict[str, list[str]]:
        """The active followers of each author (up to `at_most` each)."""
        found: dict[str, list[str]] = {a: [] for a in authors}
        for row in await self.pool.fetch(_FOLLOWERS, list(found), at_most):
            found[row["author_id"]].append(row["follower_id"])
        return found

    async def fanout_targets(self, authors: Iterable[str], max_followers: int) -> tuple[dict[str, list[str]], set[str]]:
        """(followers of each author with at most `max_followers`, the authors with more)."""
        followers: dict[str, list[str]] = {}
        big = set()
        for row in await self.pool.fetch(_FANOUT_TARGETS, list(authors), max_followers):
            if row["projected"] > max_followers or len(row["followers"]) > max_followers:
                big.add(row["author_id"])
            else:
                followers[row["author_id"]] = row["followers"]
        return followers, big

    async def big_authors(self, authors: Iterable[str], max_followers: int) -> set[str]:
        """The authors `fanout_targets` would find big, without fetching anyone's followers."""
        return {r["author_id"] for r in await self.pool.fetch(_BIG_AUTHORS, list(authors), max_followers)}

    async def follow_rows(self, user_id: str) -> dict[str, tuple[str, int]]:
        """followee -> (pair state, followee's follower count) for every pair of this follower, active or not."""
        rows = await self.pool.fetch(_FOLLOWEES, user_id)
        return {r["followee_id"]: (pair_state(r["changed_at"], r["active"]), r["followers"]) for r in rows}

    async def projected(self, changes: list[FollowChange]) -> list[bool]:
        """For each change: does the follows table already show it (or a newer change of that pair)?"""
        if not changes:
            return []
        rows = await self.pool.fetch(_PAIR_STATES, [c.follower_id for c in changes], [c.followee_id for c in changes])
        states = {(r["follower_id"], r["followee_id"]): pair_state(r["changed_at"], r["active"]) for r in rows}
        return [states.get((c.follower_id, c.followee_id), "") >= _state(c) for c in changes]

    async def stored(self, post_ids: list[str]) -> dict[str, bool]:
        """The posts among these that the posts read model holds: post id -> whether it is deleted."""
        return await self.posts.states(post_ids)


async def followees_of(timelines: RedisTimelines, source: PostgresTimelineSource, user_id: str) -> dict[str, int]:
    """Whom the user follows (followee -> follower count): the follows table, corrected by newer follow events."""
    return followed(await source.follow_rows(user_id), await timelines.applied_pairs(user_id))


async def rebuild(timelines: RedisTimelines, source: PostgresTimelineSource, user_id: str, max_followers: int) -> None:
    """Build a user's timeline from the store: the newest posts of the user and of the followees fanned out."""
    await timelines.prepare(user_id)
    followees = await followees_of(timelines, source, user_id)
    marked = await timelines.all_big()
    # Either sign of a big account counts: merging one too many at read time costs a little, missing one loses posts.
    big = {author for author, followers in followees.items() if followers > max_followers or author in marked}
    small = [author for author in followees if author not in big]
    recent = await source.newest([*small, user_id], timelines.length)
    fresh = await timelines.fresh([*small, user_id])  # posts the table did not show yet when fanned out
    await timelines.build(user_id, [member(post_id, author) for post_id, author in recent] + fresh, big)


class CachedPosts:
    """Post views by id, kept `ttl_s` in this process: timeline pages are the same posts read again and again.

    A post changes only when deleted (the timelines consumer then takes its id out of Redis, where page ids come
    from), re-rendered, replied to, or when its author renames: each shows at most `ttl_s` late. Ids missing here
    and big authors' posts are one SQL query, as without the cache.
    """

    def __init__(self, source: PostgresTimelineSource, ttl_s: float, max_entries: int = 50_000) -> None:
        self.source = source
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._views: dict[str, tuple[float, PostView]] = {}
        self._reads: SingleFlight[list[PostView]] = SingleFlight()  # one query for concurrent identical misses

    async def items(self, post_ids: list[str], authors: list[str], before: str | None, limit: int) -> list[PostView]:
        """As `PostgresTimelineSource.items`, serving fresh cached views without a query."""
        now = time.monotonic()
        found: dict[str, PostView] = {}
        missing = []
        for post_id in post_ids:
            entry = self._views.get(post_id)
            if entry is not None and entry[0] > now:
                found[post_id] = entry[1]
            else:
                missing.append(post_id)
        if missing or authors:
            key = (tuple(missing), tuple(authors), before, limit)
            read = functools.partial(self.source.items, missing, authors, before, limit)
            for view in await self._reads.run(key, read):
                found[view.id] = view
                self._views[view.id] = (now + self.ttl_s, view)
            self._evict(now)
        return sorted(found.values(), key=lambda view: view.id, reverse=True)[:limit]

    async def by_ids(self, post_ids: list[str]) -> list[PostView]:
        """The live posts among these ids, newest first."""
        return await self.items(post_ids, [], None, len(post_ids))

    def _evict(self, now: float) -> None:
        if len(self._views) <= self.max_entries:
            return
        self._views = {k: v for k, v in self._views.items() if v[0] > now}
        while len(self._views) > self.max_entries:  # still full of fresh entries: drop the oldest inserted
            del self._views[next(iter(self._views))]
