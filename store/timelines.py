"""Home timelines: a Redis sorted set of post ids per user, filled on write, rebuilt from PostgreSQL when cold.

Keys (`{user}` and `{author}` are Redis Cluster hash tags: a user's keys, and their hidden set of
store/relations.py that the window script reads, share one slot):
- `chirp:tl:home:{user}`: every score is 0 and members are `{post_id}:{author_id}`, so the set is in lexicographic order
  of ULID post ids, which is time order. `ZRANGE BYLEX REV` with an exclusive bound pages newest first without the
  ties a millisecond score has; the author in the member lets an unfollow remove that author's posts without a second
  structure. The member `~` sorts after every post and marks a timeline *built* from the store: a set without it only
  holds what writes added since and the read path rebuilds it. The member `!` sorts before every post and marks a
  rebuild under way (set before the rebuild reads the store, so no write in between is lost).
- Reposts by accounts the user follows are members too, `{repost_key}:{reposter_id}:{post_id}:{author_id}`, where the
  repost key (`repost_key`: the repost's instant, then the rest of the post id) sorts the repost among post ids as
  the read path's cursors do. A post shows once, at its newest member: the window skips a member when a newer one of
  the same post is in the timeline and visible (neither reposter nor author hidden). A deleted post's reposts stay
  until trimmed or unreposted: the read path no longer finds the post, so they are not served.
- `chirp:tl:held:{user}`: post id -> its repost members in the timeline (space-separated), so that check is one
  HGET per member read; kept with the timeline (members trimmed, unreposted or unfollowed leave it; an entry whose
  member is gone is ignored). A reposter has at most one member per post: its newest repost.
- `chirp:tl:big:{user}`: accounts the user follows whose posts and reposts are not fanned out (merged at read time).
- `chirp:tl:pairs:{user}`: followee -> `pair_state` of the newest follow/unfollow applied (last writer wins).
- `chirp:tl:recent:{author}`: follower -> `pair_state`, the follow events of the last minutes that the follows table
  (another consumer's projection) did not show yet when applied: for its own pair an event is the truth. Events the
  projection already showed only update an entry that is there, so a replay behind a rebuilt projection keeps
  these hashes empty instead of copying every follow into them.
- `chirp:tl:fresh:{author}`: the author's posts (and reposts) of the last minutes that the posts table (the
  interactions table) did not show yet when fanned out: a rebuild adds them to what it reads from the table.
- `chirp:tl:reposted:{user}`: post -> `pair_state` of the user's newest repost or unrepost applied in the last
  minutes that the interactions table did not show yet (as `recent` for follows): an older event is not applied.
- `chirp:tl:big-authors`: accounts currently not fanned out (more than `fanout_max_followers` followers).
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
from typing import Any, NamedTuple

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


def held_key(user_id: str) -> str:
    return f"chirp:tl:held:{{{user_id}}}"


def reposted_key(user_id: str) -> str:
    return f"chirp:tl:reposted:{{{user_id}}}"


def lock_key(user_id: str) -> str:
    return f"chirp:tl:lock:{{{user_id}}}"


def member(post_id: str, author_id: str) -> str:
    return f"{post_id}:{author_id}"


def repost_key(post_id: str, at: datetime) -> str:
    """Where a repost sorts among post ids (ULIDs, time-ordered): the time part of a ULID of the repost's instant,
    then the rest of the post's id (unique per post). Cursors of lists with reposts are such keys or post ids."""
    return str(ULID.from_timestamp(at.timestamp()))[:10] + post_id[10:]


def repost_member(post_id: str, author_id: str, reposter_id: str, at: datetime) -> str:
    return f"{repost_key(post_id, at)}:{reposter_id}:{post_id}:{author_id}"


def via_of(value: str) -> str:
    """Whom the member is in the timeline for: the post's author, or the repost's reposter."""
    return value.split(":", 2)[1]


def post_id_of(value: str) -> str:
    parts = value.split(":")
    return parts[2] if len(parts) == 4 else parts[0]


@dataclass(frozen=True, slots=True)
class RepostChange:
    """A user's repost (active) or unrepost of a post, at a time."""

    user_id: str
    post_id: str
    active: bool
    at: datetime

    @property
    def state(self) -> str:
        return pair_state(self.at, self.active)


def newest_reposts(changes: Iterable[RepostChange]) -> list[RepostChange]:
    """The newest change of each (user, post) (at the same instant a repost wins), in key order."""
    newest: dict[tuple[str, str], RepostChange] = {}
    for c in changes:
        key = (c.user_id, c.post_id)
        if key not in newest or c.state > newest[key].state:
            newest[key] = c
    return [newest[key] for key in sorted(newest)]


class Entry(NamedTuple):
    """A member of a timeline: where it sorts, its post, and who reposted it (None: the post itself). A tuple: a
    page's window makes 21 of them per request, ~3x cheaper than a frozen dataclass."""

    key: str
    post_id: str
    reposter: str | None


_tuple = tuple.__new__  # builds an Entry without NamedTuple's Python-level `__new__`


def entry_of(value: str) -> Entry:
    if ":" not in value:  # a post (most members)
        return _tuple(Entry, (value, value, None))
    parts = value.split(":")
    if len(parts) == 4:
        return _tuple(Entry, (parts[0], parts[2], parts[1]))
    return _tuple(Entry, (parts[0], parts[0], None))


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
    """One page read from Redis: up to limit+1 members after the cursor (each post once, at its newest member), and
    the big accounts to merge (their posts and reposts)."""

    entries: list[Entry]
    big_authors: list[str]
    hidden_version: str  # of the set of authors the user does not see (left out of the two lists above)

    @property
    def post_ids(self) -> list[str]:
        """The posts of the entries, each once."""
        return list(dict.fromkeys(e.post_id for e in self.entries))


# Lua helpers the scripts below share: a repost member's parts, and the upkeep of the `held` index.
_HELD_LUA = """
local function parts(m)  -- key, reposter, post, author of a repost member; nil for a post or a mark
  return string.match(m, '^([^:]*):([^:]*):([^:]*):([^:]*)$')
end
local function is_repost(m)  -- as parts(m) ~= nil, in two plain finds (fan-out asks it of every member it writes)
  local sep = string.find(m, ':', 1, true)
  return sep ~= nil and string.find(m, ':', sep + 1, true) ~= nil
end
local function held_del(held, m)
  local _, _, p = parts(m)
  local list = {}
  for h in string.gmatch(redis.call('HGET', held, p) or '', '%S+') do
    if h ~= m then list[#list + 1] = h end
  end
  if #list == 0 then redis.call('HDEL', held, p) else redis.call('HSET', held, p, table.concat(list, ' ')) end
end
local function held_add(tl, held, m)  -- m is in tl; a reposter keeps one member per post, its newest
  local _, r, p = parts(m)
  local list, newest = {}, m
  for h in string.gmatch(redis.call('HGET', held, p) or '', '%S+') do
    local _, hr = parts(h)
    if hr ~= r then list[#list + 1] = h
    elseif h > newest then redis.call('ZREM', tl, newest); newest = h
    elseif h < newest then redis.call('ZREM', tl, h) end
  end
  list[#list + 1] = newest
  redis.call('HSET', held, p, table.concat(list, ' '))
end
local function trim(tl, held, keep)  -- the newest `keep` members stay
  local extra = redis.call('ZCARD', tl) - keep
  if extra <= 0 then return false end
  local touched = false
  for _, m in ipairs(redis.call('ZRANGE', tl, 0, extra - 1)) do
    if is_repost(m) then held_del(held, m); touched = true end
  end
  redis.call('ZREMRANGEBYRANK', tl, 0, extra - 1)
  return touched
end
"""

# Lua: one command does a whole step, for one timeline or (fan-out) for hundreds.
# KEYS: per timeline, its key then its held index.  ARGV: length, TTL, '1' to create missing timelines (expiring in
# ARGV[4]) or '0' to skip them, then for each timeline a JSON array of its members (one argument per timeline keeps
# the client's protocol encoding short; ZADD takes up to 1,000 members per call).  Returns how many timelines were
# written.  The held index lives exactly as long as its timeline.
_ADD = (
    _HELD_LUA
    + """
local length, ttl, create, fresh_ttl = tonumber(ARGV[1]), ARGV[2], ARGV[3] == '1', ARGV[4]
local written = 0
for k = 1, #KEYS, 2 do
  local tl, held = KEYS[k], KEYS[k + 1]
  local missing = redis.call('EXISTS', tl) == 0
  if create or not missing then
    local members = cjson.decode(ARGV[(k + 1) / 2 + 4])
    for first = 1, #members, 1000 do
      local args = {}
      for j = first, math.min(first + 999, #members) do
        args[#args + 1] = 0
        args[#args + 1] = members[j]
      end
      redis.call('ZADD', tl, unpack(args))
    end
    local touched = false
    for _, m in ipairs(members) do
      if is_repost(m) then held_add(tl, held, m); touched = true end
    end
    if trim(tl, held, length + 1) then touched = true end
    if missing then redis.call('EXPIRE', tl, fresh_ttl) else redis.call('EXPIRE', tl, ttl, 'NX') end
    if touched and redis.call('EXISTS', held) == 1 then redis.call('PEXPIRE', held, redis.call('PTTL', tl)) end
    written = written + 1
  end
end
return written
"""
)

# KEYS: per timeline, its key then its held index.  ARGV: a post, a reposter: that reposter's members of that post
# leave each timeline.
_UNREPOST = (
    _HELD_LUA
    + """
for k = 1, #KEYS, 2 do
  local tl, held = KEYS[k], KEYS[k + 1]
  local list = {}
  for h in string.gmatch(redis.call('HGET', held, ARGV[1]) or '', '%S+') do
    local _, r = parts(h)
    if r == ARGV[2] then redis.call('ZREM', tl, h) else list[#list + 1] = h end
  end
  if #list == 0 then redis.call('HDEL', held, ARGV[1])
  else redis.call('HSET', held, ARGV[1], table.concat(list, ' ')) end
end
return #KEYS
"""
)

# KEYS: a fresh set.  ARGV: a post, a reposter: that reposter's members of that post leave it.
_FORGET_FRESH = (
    _HELD_LUA
    + """
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local _, r, p = parts(m)
  if r == ARGV[2] and p == ARGV[1] then redis.call('ZREM', KEYS[1], m) end
end
return 1
"""
)

# KEYS: timeline, held index, the set of users the reader does not see.  ARGV: posts.  For each post, its newest
# repost member in the timeline that the reader sees ('' for none).
_NEWEST_HELD = (
    _HELD_LUA
    + """
local found = {}
for i, p in ipairs(ARGV) do
  local newest = ''
  for h in string.gmatch(redis.call('HGET', KEYS[2], p) or '', '%S+') do
    local _, r, _, a = parts(h)
    if h > newest and redis.call('SISMEMBER', KEYS[3], r) == 0 and redis.call('SISMEMBER', KEYS[3], a) == 0
       and redis.call('ZSCORE', KEYS[1], h) then newest = h end
  end
  found[i] = newest
end
return found
"""
)

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

# KEYS: timeline, big, pairs, then the set of authors the user does not see and its version (store/relations.py),
# then the held index.  ARGV: start, how many members, TTL.  Returns false when cold, else {members, big authors,
# version of the hidden set}: the members without the hidden authors and reposters, each post once at its newest
# member the user sees (read on until the window is full), and the big authors without the hidden ones, so a muted
# or blocked author costs the page nothing, and the reader needs the hidden set itself only when its version is not
# the one it holds. A timeline without reposts and a user hiding nobody take one ZRANGE.
_WINDOW = (
    _HELD_LUA
    + """
if not redis.call('ZSCORE', KEYS[1], '~') then return false end
local want = tonumber(ARGV[2])
local ids, big = {}, redis.call('SMEMBERS', KEYS[2])
local hiding = redis.call('SCARD', KEYS[4]) > 0
local holding = redis.call('EXISTS', KEYS[6]) == 1
local function hidden(u) return hiding and redis.call('SISMEMBER', KEYS[4], u) == 1 end
local function shown(m)
  local _, r, p, a = parts(m)
  if r then
    if hidden(r) or hidden(a) then return false end
  else
    local sep = string.find(m, ':', 1, true)
    if not sep then return false end
    p = string.sub(m, 1, sep - 1)
    if hidden(string.sub(m, sep + 1)) then return false end
  end
  if holding then
    for h in string.gmatch(redis.call('HGET', KEYS[6], p) or '', '%S+') do
      if h > m then
        local _, hr, _, ha = parts(h)
        if not (hidden(hr) or hidden(ha)) and redis.call('ZSCORE', KEYS[1], h) then return false end
      end
    end
  end
  return true
end
if not (hiding or holding) then
  ids = redis.call('ZRANGE', KEYS[1], ARGV[1], '(!', 'BYLEX', 'REV', 'LIMIT', 0, want)
else
  local start = ARGV[1]
  while #ids < want do
    local chunk = redis.call('ZRANGE', KEYS[1], start, '(!', 'BYLEX', 'REV', 'LIMIT', 0, want)
    for _, m in ipairs(chunk) do
      if shown(m) then
        ids[#ids + 1] = m
        if #ids == want then break end
      end
    end
    if #chunk < want then break end
    start = '(' .. chunk[#chunk]
  end
end
if hiding then
  local visible = {}
  for _, a in ipairs(big) do
    if not hidden(a) then visible[#visible + 1] = a end
  end
  big = visible
end
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[3]) end
if holding then redis.call('EXPIRE', KEYS[6], ARGV[3]) end
return {ids, big, redis.call('GET', KEYS[5]) or '0'}
"""
)

# KEYS: timeline, big, held index.  ARGV: a user unfollowed: their posts and reposts leave the timeline.
_DROP_AUTHOR = (
    _HELD_LUA
    + """
local n = 0
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local sep = string.find(m, ':', 1, true)
  if sep and string.match(m, '^[^:]*:([^:]*)') == ARGV[1] then
    redis.call('ZREM', KEYS[1], m)
    if parts(m) then held_del(KEYS[3], m) end
    n = n + 1
  end
end
redis.call('SREM', KEYS[2], ARGV[1])
return n
"""
)

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


def window_of(found: list[Any] | None) -> Window | None:
    """The window in the window script's reply (None: the timeline is cold)."""
    if found is None:
        return None
    members, big, version = found
    return Window([entry_of(m) for m in members], list(big), str(version))


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
        self._unrepost = redis.register_script(_UNREPOST)
        self._forget_fresh = redis.register_script(_FORGET_FRESH)
        self._newest_held = redis.register_script(_NEWEST_HELD)

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
        keys = [timeline_key(user_id), big_key(user_id), pairs_key(user_id), *hidden_keys, held_key(user_id)]
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
                keys = [key for user, _ in chunk for key in (timeline_key(user), held_key(user))]
                await self._add(keys=keys, args=args, client=pipe)
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
                pipe.zrem(fresh_key(via_of(value)), value)
                keys = [timeline_key(user) for user in timelines]
                for chunk in slot_chunks(self.redis, keys, str, _KEYS_PER_CALL):
                    await self._remove(keys=chunk, args=[value], client=pipe)
            await pipe.execute()

    async def drop_authors(self, pairs: Iterable[tuple[str, str]]) -> None:
        """After unfollows (user, author): the author's posts and reposts leave the user's timeline, the author its big
        set."""
        items = list(pairs)
        for i in range(0, len(items), _CHUNK):
            async with self.redis.pipeline(transaction=False) as pipe:
                for user, author in items[i : i + _CHUNK]:
                    keys = [timeline_key(user), big_key(user), held_key(user)]
                    await self._drop_author(keys=keys, args=[author], client=pipe)
                await pipe.execute()

    async def unrepost(self, removals: Iterable[tuple[str, str, Iterable[str]]]) -> None:
        """For each (reposter, post, users): the reposter's repost of the post leaves those users' timelines and the
        reposter's fresh set, in one pipeline."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for reposter, post_id, users in removals:
                await self._forget_fresh(keys=[fresh_key(reposter)], args=[post_id, reposter], client=pipe)
                for chunk in slot_chunks(self.redis, list(users), timeline_key, _KEYS_PER_CALL):
                    keys = [key for user in chunk for key in (timeline_key(user), held_key(user))]
                    await self._unrepost(keys=keys, args=[post_id, reposter], client=pipe)
            await pipe.execute()

    async def newest_held(self, user_id: str, post_ids: list[str], hidden_set: str) -> dict[str, str]:
        """post -> the key of its newest repost in the user's timeline that the user sees (none: left out)."""
        if not post_ids:
            return {}
        keys = [timeline_key(user_id), held_key(user_id), hidden_set]
        found = await self._newest_held(keys=keys, args=post_ids)
        return {p: entry_of(str(m)).key for p, m in zip(post_ids, found, strict=True) if m}

    async def newer_reposts(self, changes: list[RepostChange]) -> list[bool]:
        """For each change: is it newer than the last one applied to that (reposter, post) in the last minutes?"""
        by_user: dict[str, list[int]] = {}
        for i, change in enumerate(changes):
            by_user.setdefault(change.user_id, []).append(i)
        groups = list(by_user.items())
        applied: list[str | None] = [None] * len(changes)
        for chunk in slot_chunks(self.redis, groups, lambda group: reposted_key(group[0]), _CHUNK):
            args: list[str | int] = []
            for _, indices in chunk:
                args += [len(indices), *(changes[i].post_id for i in indices)]
            states = iter(await self._fields(keys=[reposted_key(user) for user, _ in chunk], args=args))
            for _, indices in chunk:
                for i in indices:
                    applied[i] = next(states)
        return [old is None or old < c.state for old, c in zip(applied, changes, strict=True)]

    async def record_reposts(self, changes: list[RepostChange], shown: Iterable[bool]) -> None:
        """Remember these changes as applied for `RECENT_TTL_S`, except those the interactions table showed already
        (those only update an entry that is there)."""
        entries: list[tuple[str, list[str | int]]] = [
            (reposted_key(c.user_id), [c.post_id, c.state, RECENT_TTL_S, "KNOWN" if known else "XX"])
            for c, known in zip(changes, shown, strict=True)
        ]
        async with self.redis.pipeline(transaction=False) as pipe:
            for chunk in slot_chunks(self.redis, entries, lambda entry: entry[0], _KEYS_PER_CALL):
                args = [arg for _, four in chunk for arg in four]
                await self._record_pairs(keys=[key for key, _ in chunk], args=args, client=pipe)
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
        """Merge a rebuild from the store into the timeline and mark it built (writes since are kept).

        The big accounts go first, so a reader who sees the built mark merges them; the members and the mark go in
        one script call (with their held index), and the rebuild's mark leaves last."""
        keys = [timeline_key(user_id), big_key(user_id), held_key(user_id)]
        authors = list(big)
        await self.redis.set(HOMES, 1)  # before the timeline is built; not in its transaction (another slot)
        async with self.redis.pipeline(transaction=False) as pipe:
            if authors:
                pipe.sadd(keys[1], *authors)
            args: list[str | int] = [self.length + 1, TTL_S, "1", TTL_S, orjson.dumps([*values, BUILT]).decode()]
            await self._add(keys=[keys[0], keys[2]], args=args, client=pipe)
            pipe.zrem(keys[0], BUILDING)
            pipe.zremrangebyrank(keys[0], 0, -(self.length + 2))  # a held entry this drops is ignored, then expires
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


# The interactions table's state of each (user, post) repost, and each user's newest reposts (interactions_by_user).
_REPOST_STATES = """
SELECT i.user_id, i.post_id, i.active, i.changed_at FROM unnest($1::text[], $2::text[]) AS x(user_id, post_id)
JOIN interactions i ON i.post_id = x.post_id AND i.kind = 'repost' AND i.user_id = x.user_id"""

_RECENT_REPOSTS = """
SELECT u.user_id, r.post_id, r.changed_at FROM unnest($1::text[]) AS u(user_id), LATERAL (
    SELECT post_id, changed_at FROM interactions WHERE user_id = u.user_id AND kind = 'repost' AND active
    ORDER BY changed_at DESC, post_id DESC LIMIT $2) r"""

# The newest repost of each of these posts by any of these users (interactions_by_post).
_NEWEST_REPOSTS = """
SELECT DISTINCT ON (post_id) post_id, changed_at FROM interactions
WHERE post_id = ANY($1::text[]) AND kind = 'repost' AND active AND user_id = ANY($2::text[])
ORDER BY post_id, changed_at DESC"""


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

    async def repost_states(self, changes: list[RepostChange]) -> list[str]:
        """For each change, the state the interactions table shows for its (user, post) ('' for none)."""
        if not changes:
            return []
        rows = await self.pool.fetch(_REPOST_STATES, [c.user_id for c in changes], [c.post_id for c in changes])
        states = {(r["user_id"], r["post_id"]): pair_state(r["changed_at"], r["active"]) for r in rows}
        return [states.get((c.user_id, c.post_id), "") for c in changes]

    async def recent_reposts(self, users: Iterable[str], per_user: int) -> dict[str, list[str]]:
        """Each user's newest `per_user` reposts of live posts, as timeline members, newest first."""
        found: dict[str, list[str]] = {u: [] for u in users}
        rows = await self.pool.fetch(_RECENT_REPOSTS, list(found), per_user)
        authors = await self.posts.authors_of(sorted({r["post_id"] for r in rows})) if rows else {}
        for r in rows:
            if (author := authors.get(r["post_id"])) is not None:
                found[r["user_id"]].append(repost_member(r["post_id"], author, r["user_id"], r["changed_at"]))
        return found

    async def newest_reposts(self, post_ids: list[str], users: list[str]) -> dict[str, str]:
        """post -> the repost key of its newest repost by any of `users` (posts none of them reposted: absent)."""
        if not post_ids or not users:
            return {}
        rows = await self.pool.fetch(_NEWEST_REPOSTS, post_ids, users)
        return {r["post_id"]: repost_key(r["post_id"], r["changed_at"]) for r in rows}

    async def cards(self, user_ids: list[str]) -> dict[str, dict[str, str]]:
        """user id -> handle, display_name and avatar_url of those of these users the users table holds."""
        sql = "SELECT user_id, handle, display_name, avatar_url FROM users WHERE user_id = ANY($1::text[])"
        rows = await self.pool.fetch(sql, user_ids)
        return {r["user_id"]: {k: r[k] for k in ("handle", "display_name", "avatar_url")} for r in rows}

    async def stored(self, post_ids: list[str]) -> dict[str, bool]:
        """The posts among these that the posts read model holds: post id -> whether it is deleted."""
        return await self.posts.states(post_ids)


async def followees_of(timelines: RedisTimelines, source: PostgresTimelineSource, user_id: str) -> dict[str, int]:
    """Whom the user follows (followee -> follower count): the follows table, corrected by newer follow events."""
    return followed(await source.follow_rows(user_id), await timelines.applied_pairs(user_id))


async def rebuild(timelines: RedisTimelines, source: PostgresTimelineSource, user_id: str, max_followers: int) -> None:
    """Build a user's timeline from the store: the newest posts and reposts of the user and of the followees fanned
    out."""
    await timelines.prepare(user_id)
    followees = await followees_of(timelines, source, user_id)
    marked = await timelines.all_big()
    # Either sign of a big account counts: merging one too many at read time costs a little, missing one loses posts.
    big = {author for author, followers in followees.items() if followers > max_followers or author in marked}
    small = [author for author in followees if author not in big]
    recent = await source.newest([*small, user_id], timelines.length)
    reposts = await source.recent_reposts([*small, user_id], timelines.length)
    newest_reposts = sorted((m for ms in reposts.values() for m in ms), reverse=True)[: timelines.length]
    fresh = await timelines.fresh([*small, user_id])  # posts the tables did not show yet when fanned out
    posts = [member(post_id, author) for post_id, author in recent]
    await timelines.build(user_id, posts + newest_reposts + fresh, big)


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
        self._cards: dict[str, tuple[float, dict[str, str]]] = {}  # reposters' names, kept as the posts are

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

    async def cards(self, user_ids: list[str]) -> dict[str, dict[str, str]]:
        """As `PostgresTimelineSource.cards`, serving fresh cached names without a query."""
        now = time.monotonic()
        found = {u: e[1] for u in user_ids if (e := self._cards.get(u)) is not None and e[0] > now}
        if missing := [u for u in user_ids if u not in found]:
            fetched = await self.source.cards(missing)
            if len(self._cards) + len(fetched) > self.max_entries:
                self._cards = {k: v for k, v in self._cards.items() if v[0] > now}
                if len(self._cards) + len(fetched) > self.max_entries:
                    self._cards.clear()
            for user_id, card in fetched.items():
                self._cards[user_id] = (now + self.ttl_s, card)
            found.update(fetched)
        return found

    def _evict(self, now: float) -> None:
        if len(self._views) <= self.max_entries:
            return
        self._views = {k: v for k, v in self._views.items() if v[0] > now}
        while len(self._views) > self.max_entries:  # still full of fresh entries: drop the oldest inserted
            del self._views[next(iter(self._views))]
