"""Trending counts in Redis: the `TrendingCounts` port and its adapter, `RedisTrending`.

Every key starts with a prefix (`DEFAULT_PREFIX`, or another one so a replay can build into a fresh namespace).
The prefix holds a Redis Cluster hash tag (`{trending}`), so the whole model is one slot: a post's script writes its
tags' and users' buckets, `now` and `version` at once, and ranking unions actor sets across buckets (the model is
bounded by the activity of 50 hours, not by the number of users: docs/scaling.md).

| key | what |
| --- | --- |
| `{p}now` | "now" for the ranking: the newest post/follow time seen or at the log's tail (epoch s), not wall-clock |
| `{p}post:{post_id}` | what a post contributed (JSON: time, author, tags, mentions, version), or `x` once deleted |
| `{p}{t,u}:{m,h}:{bucket}:p:{subject}` | hash contribution → actor (post → author; `p:`, `m:`, `f:` ids) |
| `{p}{t,u}:{m,h}:{bucket}:a:{subject}` | set of distinct actors (authors of a tag; people drawing activity to a user) |
| `{p}active:{t,u}:{m,h}:{bucket}` | set of subjects with a contribution in the bucket (the ranking's candidates) |
| `{p}moderation` | hash `#tag` / `@handle` → `{at_us:020}|{event_id}|{1 hidden, 0 shown}` (last writer wins) |
| `{p}ranking:{window}` | the precomputed answer of `GET /api/trending?window=` (JSON), all the gateway reads |
| `{p}version` | bumped by every write |
| `{p}ranked` | the version the stored rankings were computed from: the refresher recomputes when it differs |
| `{p}collected:{m,h}` | the first bucket the refresher has not deleted yet (`collect`: buckets past their TTL) |

Buckets are 1 minute (`m`, kept 3 h) and 1 hour (`h`, kept 50 h), numbered `epoch // size` from the event time.
Subjects: a tag key; for users `u:{user_id}` (their posts, new followers) and `h:{handle}` (mentions, which carry
handles), merged at ranking time through the `users` table.

Idempotency: a post applies once (its record is written in the same Lua script; a redelivery finds it and stops), a
delete applies once (the tombstone), and a delete before the post leaves a tombstone the post then finds. An edit
replaces what its post contributed when it is a newer version than the record's (`v`, the edit's time), in one
script that checks the record it read is still there, so the newest version counts whatever order edits arrive in.
A follow is a hash field `f:{follower}` in its bucket, so a redelivery sets the same field. Distinct actors are
sets, so one person repeating a tag counts once; a delete removes the post's fields and takes the actor out of the
set only when none of their other posts remain in that bucket.
"""

from __future__ import annotations

import re
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
import redis.asyncio as aioredis

from domain.text import is_handle, tag_key
from store.trending_score import WINDOWS, Ranked, Window, rank, score, slices

DEFAULT_PREFIX = "trending:{trending}:"  # the tag: one slot for the whole model (see above)
RES_S = {"m": 60, "h": 3600}
TTL_S = {"m": 3 * 3600, "h": 50 * 3600}
RECORD_TTL_S = 50 * 3600
TOMBSTONE_TTL_S = 7 * 86400
RETENTION_S = 49 * 3600  # events older than `now` minus this can no longer reach any window: skipped
FUTURE_SKEW_S = 300  # an event dated further than this past the wall clock does not move `now` (bad clocks)
TOP = 50  # items kept per window; the gateway serves up to this many
TOMBSTONE = "x"
COUNT_CHUNK = 1000  # subjects counted per Redis round trip when ranking
COLLECT_BUCKETS = 5000  # buckets per resolution a collection pass deletes at most


@dataclass(frozen=True, slots=True)
class Contribution:
    """One piece of activity: `actor` drew `field` to `subject` (kind `t` a tag, `u` a user)."""

    kind: str
    subject: str
    field: str
    actor: str


@dataclass(frozen=True, slots=True)
class PostActivity:
    post_id: str
    author_id: str
    at: float  # epoch seconds of the post's creation
    tags: tuple[str, ...]
    mentions: tuple[str, ...]
    version: float = 0.0  # epoch seconds of the edit this is (0: the first version)

    def record(self) -> str:
        data = {"t": self.at, "a": self.author_id, "tags": self.tags, "m": self.mentions, "v": self.version}
        return orjson.dumps(data).decode()

    @classmethod
    def from_record(cls, post_id: str, raw: str) -> PostActivity:
        data = orjson.loads(raw)
        return cls(post_id, data["a"], data["t"], tuple(data["tags"]), tuple(data["m"]), data.get("v", 0.0))

    def contributions(self) -> list[Contribution]:
        """Each tag gets the author; the author gets their post; each mentioned handle gets the author."""
        found = [Contribution("t", tag, self.post_id, self.author_id) for tag in self.tags]
        found.append(Contribution("u", f"u:{self.author_id}", f"p:{self.post_id}", self.author_id))
        found += [Contribution("u", f"h:{h}", f"m:{self.post_id}", self.author_id) for h in self.mentions]
        return found


@dataclass(frozen=True, slots=True)
class Follow:
    follower_id: str
    followee_id: str
    at: float

    def contribution(self) -> Contribution:
        return Contribution("u", f"u:{self.followee_id}", f"f:{self.follower_id}", self.follower_id)


_TAG = re.compile(r"^\w+$")


def moderation_target(raw: str) -> str | None:
    """`#tag` (case-folded, NFC; a bare `tag` too) or `@handle` (lower-case) as stored; None if neither."""
    raw = raw.strip()
    if raw.startswith("@"):
        return f"@{raw[1:].lower()}" if is_handle(raw[1:]) else None
    tag = tag_key(raw)
    return f"#{tag}" if _TAG.match(tag) and any(c.isalpha() for c in tag) else None


def moderation_value(at_us: int, event_id: str, hidden: bool) -> str:
    """The stored moderation state; string order is (time, event id) order, so the newest wins."""
    return f"{at_us:020d}|{event_id}|{1 if hidden else 0}"


def ranking_key(window: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The key holding the precomputed ranking of `window`."""
    return f"{prefix}ranking:{window}"


# Lua: each script is one atomic step, so concurrent consumers never see half a post. ----------------------------

# KEYS: record (ignored when ARGV[1] is ''), now, version, then (contributions, actors, active) per contribution.
# ARGV: record value or '', record ttl, event time, then (field, actor, subject, ttl) per contribution.
_ADD = """
if tonumber(ARGV[3]) > tonumber(redis.call('GET', KEYS[2]) or '0') then redis.call('SET', KEYS[2], ARGV[3]) end
if ARGV[1] ~= '' then
  if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
end
local added = 0
for i = 4, #KEYS, 3 do
  local j = 4 + (i - 4) / 3 * 4
  if redis.call('HSETNX', KEYS[i], ARGV[j], ARGV[j + 1]) == 1 then
    redis.call('SADD', KEYS[i + 1], ARGV[j + 1])
    redis.call('SADD', KEYS[i + 2], ARGV[j + 2])
    added = added + 1
  end
  for k = i, i + 2 do redis.call('EXPIRE', KEYS[k], ARGV[j + 3]) end
end
if added > 0 then redis.call('INCR', KEYS[3]) end
return 1
"""

# Takes one contribution out: its field from the contributions hash (KEYS[i]); its actor (ARGV[j + 1]) from the
# actors set (KEYS[i + 1]) unless another field still names it; the subject (ARGV[j + 2]) from the active set
# (KEYS[i + 2]) once no contribution is left.
_TAKE_OUT = """
local function take_out(i, j)
  if redis.call('HDEL', KEYS[i], ARGV[j]) == 1 then
    local still = false
    for _, actor in ipairs(redis.call('HVALS', KEYS[i])) do
      if actor == ARGV[j + 1] then still = true break end
    end
    if not still then redis.call('SREM', KEYS[i + 1], ARGV[j + 1]) end
    if redis.call('HLEN', KEYS[i]) == 0 then redis.call('SREM', KEYS[i + 2], ARGV[j + 2]) end
  end
end
"""

# KEYS: record, version, then (contributions, actors, active) per contribution.
# ARGV: the record value read before (or ''), tombstone ttl, then (field, actor, subject) per contribution.
# Returns -1 when the record changed since it was read (the caller reads again).
_REMOVE = (
    _TAKE_OUT
    + """
if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then return -1 end
for i = 3, #KEYS, 3 do take_out(i, 3 + (i - 3) / 3 * 3) end
redis.call('SET', KEYS[1], 'x', 'EX', ARGV[2])
redis.call('INCR', KEYS[2])
return 1
"""
)

# An edit: the old version's contributions out (as _REMOVE), the new one's in (as _ADD), the record replaced.
# KEYS: record, version, then (contributions, actors, active) per old contribution, then per new one.
# ARGV: the record read before, the new record, record ttl, the number of old contributions, then (field, actor,
# subject) per old contribution, then (field, actor, subject, ttl) per new one.
# Returns -1 when the record changed since it was read (the caller reads again).
_REPLACE = (
    _TAKE_OUT
    + """
if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then return -1 end
local old = tonumber(ARGV[4])
for n = 0, old - 1 do take_out(3 + n * 3, 5 + n * 3) end
for n = 0, (#KEYS - 2) / 3 - old - 1 do
  local i, j = 3 + (old + n) * 3, 5 + old * 3 + n * 4
  if redis.call('HSETNX', KEYS[i], ARGV[j], ARGV[j + 1]) == 1 then
    redis.call('SADD', KEYS[i + 1], ARGV[j + 1])
    redis.call('SADD', KEYS[i + 2], ARGV[j + 2])
  end
  for k = i, i + 2 do redis.call('EXPIRE', KEYS[k], ARGV[j + 3]) end
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
redis.call('INCR', KEYS[2])
return 1
"""
)

# KEYS: moderation hash, version. ARGV: target, value (see moderation_value).
_MODERATE = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current and current >= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('INCR', KEYS[2])
return 1
"""


class RedisTrending:
    """`TrendingCounts` on Redis, every key under `prefix`."""

    def __init__(self, redis: aioredis.Redis, prefix: str = DEFAULT_PREFIX) -> None:
        self.redis = redis
        self.p = prefix
        self._add = redis.register_script(_ADD)
        self._remove = redis.register_script(_REMOVE)
        self._replace = redis.register_script(_REPLACE)
        self._moderate = redis.register_script(_MODERATE)

    # Keys ----------------------------------------------------------------------------------------------------

    @property
    def now_key(self) -> str:
        return f"{self.p}now"

    @property
    def version_key(self) -> str:
        return f"{self.p}version"

    @property
    def ranked_key(self) -> str:
        return f"{self.p}ranked"

    @property
    def moderation_key(self) -> str:
        return f"{self.p}moderation"

    def post_key(self, post_id: str) -> str:
        return f"{self.p}post:{post_id}"

    def ranking_key(self, window: str) -> str:
        return ranking_key(window, self.p)

    def contributions_key(self, kind: str, res: str, bucket: int, subject: str) -> str:
        return f"{self.p}{kind}:{res}:{bucket}:p:{subject}"

    def actors_key(self, kind: str, res: str, bucket: int, subject: str) -> str:
        return f"{self.p}{kind}:{res}:{bucket}:a:{subject}"

    def active_key(self, kind: str, res: str, bucket: int) -> str:
        return f"{self.p}active:{kind}:{res}:{bucket}"

    def _triples(self, contributions: Iterable[Contribution], at: float) -> tuple[list[str], list[str], list[str]]:
        """(keys, add args, remove args) of `contributions` at both resolutions."""
        keys: list[str] = []
        add: list[str] = []
        remove: list[str] = []
        for c in contributions:
            for res, size in RES_S.items():
                bucket = int(at // size)
                keys += [
                    self.contributions_key(c.kind, res, bucket, c.subject),
                    self.actors_key(c.kind, res, bucket, c.subject),
                    self.active_key(c.kind, res, bucket),
                ]
                add += [c.field, c.actor, c.subject, str(TTL_S[res])]
                remove += [c.field, c.actor, c.subject]
        return keys, add, remove

    # Writes --------------------------------------------------------------------------------------------------

    async def _current(self) -> float:
        return float(await self.redis.get(self.now_key) or 0)

    async def advance(self, at: float) -> None:
        """Move `now` forward to `at` (never back, never further than `FUTURE_SKEW_S` past the wall clock)."""
        at = min(at, time.time() + FUTURE_SKEW_S)
        await self._add(keys=[self.now_key, self.now_key, self.version_key], args=["", "0", str(at)])

    async def add_posts(self, posts: Sequence[PostActivity]) -> None:
        """Count each post once (its author per tag, activity per user) in its minute and hour buckets; an edit
        (a post with a `version`) replaces what an older version of its post counted."""
        horizon = await self._current() - RETENTION_S
        latest = time.time() + FUTURE_SKEW_S
        edits = [p for p in posts if p.version and p.at >= horizon]
        if edits:
            await self._replace_posts(edits)
        async with self.redis.pipeline(transaction=False) as pipe:
            for post in posts:
                if post.at < horizon or post.version:
                    continue
                keys, args, _ = self._triples(post.contributions(), post.at)
                head = [post.record(), str(RECORD_TTL_S), str(min(post.at, latest))]
                await self._add(
                    keys=[self.post_key(post.post_id), self.now_key, self.version_key, *keys],
                    args=[*head, *args],
                    client=pipe,
                )
            await pipe.execute()

    async def _replace_posts(self, edits: Sequence[PostActivity], attempts: int = 5) -> None:
        """Apply each edit newer than its post's record: old contributions out, new ones in (a first sight adds)."""
        newest: dict[str, PostActivity] = {}
        for edit in edits:
            if edit.post_id not in newest or newest[edit.post_id].version < edit.version:
                newest[edit.post_id] = edit
        pending = newest
        for _ in range(attempts):
            if not pending:
                return
            ids = list(pending)
            records = await self.redis.mget([self.post_key(i) for i in ids])
            async with self.redis.pipeline(transaction=False) as pipe:
                sent: list[str] = []
                for post_id, raw in zip(ids, records, strict=True):
                    edit = pending[post_id]
                    old = PostActivity.from_record(post_id, str(raw)) if raw and raw != TOMBSTONE else None
                    if raw == TOMBSTONE or (old is not None and old.version >= edit.version):
                        continue
                    old_keys, _, old_args = self._triples(old.contributions(), old.at) if old else ([], [], [])
                    new_keys, new_args, _ = self._triples(edit.contributions(), edit.at)
                    head = [raw or "", edit.record(), str(RECORD_TTL_S), str(len(old_keys) // 3)]
                    await self._replace(
                        keys=[self.post_key(post_id), self.version_key, *old_keys, *new_keys],
                        args=[*head, *old_args, *new_args],
                        client=pipe,
                    )
                    sent.append(post_id)
                results = await pipe.execute()
            pending = {i: pending[i] for i, r in zip(sent, results, strict=True) if r == -1}
        if pending:
            raise RuntimeError(f"posts kept changing while being edited: {sorted(pending)[:5]}")

    async def add_follows(self, follows: Sequence[Follow]) -> None:
        """Count each new follower once per bucket of the followee."""
        horizon = await self._current() - RETENTION_S
        latest = time.time() + FUTURE_SKEW_S
        async with self.redis.pipeline(transaction=False) as pipe:
            for follow in follows:
                if follow.at < horizon:
                    continue
                keys, args, _ = self._triples([follow.contribution()], follow.at)
                head = ["", "0", str(min(follow.at, latest))]
                await self._add(
                    keys=[self.now_key, self.now_key, self.version_key, *keys], args=[*head, *args], client=pipe
                )
            await pipe.execute()

    async def remove_posts(self, deletes: Sequence[tuple[str, str]], attempts: int = 5) -> None:
        """Take deleted posts (post id, author id) out of every bucket they counted in; tombstone them."""
        pending = dict(deletes)
        for _ in range(attempts):
            if not pending:
                return
            ids = list(pending)
            records = await self.redis.mget([self.post_key(i) for i in ids])
            async with self.redis.pipeline(transaction=False) as pipe:
                sent: list[str] = []
                for post_id, raw in zip(ids, records, strict=True):
                    if raw == TOMBSTONE:
                        continue
                    keys: list[str] = []
                    args: list[str] = []
                    if raw is not None:
                        post = PostActivity.from_record(post_id, str(raw))
                        if post.author_id != pending[post_id]:
                            continue  # only its author deletes a post (as the posts model decides)
                        keys, _, args = self._triples(post.contributions(), post.at)
                    head = [raw or "", str(TOMBSTONE_TTL_S)]
                    await self._remove(
                        keys=[self.post_key(post_id), self.version_key, *keys], args=[*head, *args], client=pipe
                    )
                    sent.append(post_id)
                results = await pipe.execute()
            pending = {i: pending[i] for i, r in zip(sent, results, strict=True) if r == -1}
        if pending:
            raise RuntimeError(f"posts kept changing while being deleted: {sorted(pending)[:5]}")

    async def moderate(self, target: str, hidden: bool, at_us: int, event_id: str) -> None:
        """Hide or show `#tag` / `@handle` in every window (the newest moderation event wins)."""
        value = moderation_value(at_us, event_id, hidden)
        await self._moderate(keys=[self.moderation_key, self.version_key], args=[target, value])

    # Collection ----------------------------------------------------------------------------------------------

    def collected_key(self, res: str) -> str:
        return f"{self.p}collected:{res}"

    async def collect(self) -> int:
        """Delete the buckets that fell more than their TTL behind `now` (no window reads them); returns keys deleted.

        Live, they expire on their own. A replay writes a long history within minutes of wall-clock time, so without
        this every bucket of that history would still be there at the swap. `{p}collected:{res}` remembers the first
        bucket not collected yet, so each pass deletes only what newly fell out (at most `COLLECT_BUCKETS`; the
        first pass looks that far back).
        """
        raw_now = await self.redis.get(self.now_key)
        if raw_now is None:
            return 0
        deleted = 0
        for res, size in RES_S.items():
            cutoff = int((float(raw_now) - TTL_S[res]) // size)  # buckets below this are out of every window
            first = await self.redis.get(self.collected_key(res))
            start = cutoff - COLLECT_BUCKETS if first is None else int(first)
            buckets = range(start, min(cutoff, start + COLLECT_BUCKETS))
            slots = [(kind, bucket) for bucket in buckets for kind in ("t", "u")]
            async with self.redis.pipeline(transaction=False) as pipe:
                for kind, bucket in slots:
                    pipe.smembers(self.active_key(kind, res, bucket))
                subjects = await pipe.execute()
            doomed = [self.active_key(kind, res, bucket) for kind, bucket in slots]
            for (kind, bucket), found in zip(slots, subjects, strict=True):
                for subject in found:
                    doomed += [
                        self.contributions_key(kind, res, bucket, subject),
                        self.actors_key(kind, res, bucket, subject),
                    ]
            for i in range(0, len(doomed), 1000):
                deleted += await self.redis.delete(*doomed[i : i + 1000])
            await self.redis.set(self.collected_key(res), max(start, buckets.stop))
        return deleted

    # Ranking -------------------------------------------------------------------------------------------------

    async def stale(self) -> bool:
        """Whether the counts changed since the stored rankings were computed (or there are none yet)."""
        version, ranked = await self.redis.mget(self.version_key, self.ranked_key)
        return ranked is None or version != ranked

    async def hidden(self) -> set[str]:
        """The targets currently hidden from trending."""
        found = await self.redis.hgetall(self.moderation_key)
        return {str(t) for t, v in found.items() if str(v).endswith("|1")}

    async def refresh(self, pg: asyncpg.Pool | None) -> dict[str, dict[str, Any]]:
        """Recompute the ranking of every window and store it (one JSON blob per window); returns them."""
        version, raw_now = await self.redis.mget(self.version_key, self.now_key)
        hidden = await self.hidden()
        results: dict[str, dict[str, Any]] = {}
        tmp = f"{self.p}tmp:{uuid.uuid4().hex}"
        try:
            for window in WINDOWS.values():
                if raw_now is None:
                    results[window.name] = {"hashtags": [], "users": []}
                    continue
                now = float(raw_now)
                tags = await self._rank_tags(window, now, hidden, tmp)
                users = await self._rank_users(window, now, hidden, tmp, pg)
                results[window.name] = {"hashtags": tags, "users": users}
        finally:
            await self.redis.unlink(tmp)
        async with self.redis.pipeline(transaction=False) as pipe:
            for name, blob in results.items():
                pipe.set(self.ranking_key(name), orjson.dumps(blob))
            pipe.set(self.ranked_key, version or "0")
            await pipe.execute()
        return results

    async def ranking(self, window: str) -> str | None:
        """The stored ranking of `window` (JSON), None before the first refresh."""
        blob = await self.redis.get(self.ranking_key(window))
        return None if blob is None else str(blob)

    async def _active(self, kind: str, window: Window, now: float) -> dict[str, set[int]]:
        """Subject → buckets of the window and its baseline period where it has activity."""
        buckets = list(window.buckets(now, baseline=True)) + list(window.buckets(now))
        async with self.redis.pipeline(transaction=False) as pipe:
            for bucket in buckets:
                pipe.smembers(self.active_key(kind, window.res, bucket))
            members = await pipe.execute()
        found: dict[str, set[int]] = defaultdict(set)
        for bucket, subjects in zip(buckets, members, strict=True):
            for subject in subjects:
                found[subject].add(bucket)
        return found

    async def _counts(
        self, kind: str, res: str, groups: list[list[tuple[str, set[int]]]], spans: list[range], tmp: str
    ) -> list[list[int]]:
        """Per group (subjects with their active buckets), the distinct actors within each span of buckets.

        Pipelined in chunks of `COUNT_CHUNK` groups, so a window with many active subjects (a replay) does not hold
        every command and reply in memory at once.
        """
        counts: list[list[int]] = []
        for start in range(0, len(groups), COUNT_CHUNK):
            async with self.redis.pipeline(transaction=False) as pipe:
                shape: list[int] = []
                for group in groups[start : start + COUNT_CHUNK]:
                    for span in spans:
                        keys = [self.actors_key(kind, res, b, s) for s, active in group for b in span if b in active]
                        shape.append(len(keys))
                        if len(keys) == 1:
                            pipe.scard(keys[0])
                        elif keys:
                            pipe.sunionstore(tmp, keys)
                replies = iter(await pipe.execute())
            flat = [int(next(replies)) if n else 0 for n in shape]
            counts.extend(flat[i : i + len(spans)] for i in range(0, len(flat), len(spans)))
        return counts

    async def _rank_tags(self, window: Window, now: float, hidden: set[str], tmp: str) -> list[dict[str, Any]]:
        active = await self._active("t", window, now)
        names = sorted(tag for tag in active if f"#{tag}" not in hidden)
        groups = [[(tag, active[tag])] for tag in names]
        spans = [window.buckets(now), window.buckets(now, baseline=True)]
        counts = await self._counts("t", window.res, groups, spans, tmp)
        top = rank(Ranked(name, c[0], score(c[0], c[1])) for name, c in zip(names, counts, strict=True))[:TOP]
        sparks = await self._counts(
            "t", window.res, [[(r.name, active[r.name])] for r in top], slices(window, now), tmp
        )
        return [
            {"tag": r.name, "score": r.score, "count": r.count, "sparkline": s}
            for r, s in zip(top, sparks, strict=True)
        ]

    async def _rank_users(
        self, window: Window, now: float, hidden: set[str], tmp: str, pg: asyncpg.Pool | None
    ) -> list[dict[str, Any]]:
        active = await self._active("u", window, now)
        if not active or pg is None:
            return []
        people = await _resolve(pg, active)
        names = sorted(h for h in people if f"@{h.lower()}" not in hidden)
        groups = [[(s, active[s]) for s in people[h]] for h in names]
        spans = [window.buckets(now), window.buckets(now, baseline=True)]
        counts = await self._counts("u", window.res, groups, spans, tmp)
        top = rank(Ranked(name, c[0], score(c[0], c[1])) for name, c in zip(names, counts, strict=True))
        return [{"handle": r.name, "score": r.score, "count": r.count} for r in top[:TOP]]


_USERS = """
SELECT user_id, handle FROM users
WHERE (user_id = ANY($1::text[]) OR lower(handle) = ANY($2::text[])) AND handle NOT LIKE '~%'
"""


async def _resolve(pg: asyncpg.Pool, active: dict[str, set[int]]) -> dict[str, list[str]]:
    """Handle → the subjects (`u:{id}`, `h:{handle}`) that are that user, for users known to the `users` table."""
    ids = [s[2:] for s in active if s.startswith("u:")]
    handles = [s[2:] for s in active if s.startswith("h:")]
    people: dict[str, list[str]] = {}
    for row in await pg.fetch(_USERS, ids, handles):
        subjects = [s for s in (f"u:{row['user_id']}", f"h:{row['handle'].lower()}") if s in active]
        if subjects:
            people[row["handle"]] = subjects
    return people
