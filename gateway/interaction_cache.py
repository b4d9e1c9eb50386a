"""Interactions kept briefly in the gateway process for the home timeline and `GET /api/posts/{id}`, read again and
again (a post read when its interactions are not kept comes with them in one query: `post_and_fields`).

What is cached, `ttl_s` each: a post's counts and quoted post (shared by every viewer), a viewer's `*_by_me` flags
per post, and the pages of what a viewer and their followees reposted (for a cold home timeline: a warm one has
its reposts from Redis and big accounts). Likes, reposts, bookmarks and quotes show as soon as they are applied:
the interactions consumer announces each committed batch's (user, post, kind) changes (store/interactions.py
`CHANNEL`; a quote names the quoting and the quoted post, a deletion the deleted post, those it quoted and those
quoting it) and one subscriber task per process drops those posts' counts and those users' flags, and every reposts
page when a repost moved. A follow's reposts show at most `ttl_s` late, as a reply count does in the timeline's
cached posts. A change announced while a query is in flight is not cached from that query. While the subscription
is down (not yet started, Redis away), every read goes to the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, Generic, TypeVar

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from chirp.logging import get_logger
from chirp.single_flight import SingleFlight
from store.interactions import CHANNEL, InteractionsReadModel, Parts, flags_json
from store.posts import PostReadModel, PostView

log = get_logger("chirp.gateway")

RETRY_S = 0.5
TTL_S = 2.0  # as the timeline's cached posts (gateway/routes/timeline.py POST_CACHE_TTL_S)
MAX_ENTRIES = 50_000  # per map; past it, expired entries go, then the oldest inserted


K = TypeVar("K")
V = TypeVar("V")


class _TTLMap(Generic[K, V]):
    """Values kept until `ttl_s` after they were stored, at most `max_entries` of them."""

    def __init__(self, ttl_s: float, max_entries: int) -> None:
        self.ttl_s, self.max_entries = ttl_s, max_entries
        self._entries: dict[K, tuple[float, V]] = {}

    def get(self, key: K, now: float) -> V | None:
        entry = self._entries.get(key)
        return entry[1] if entry is not None and entry[0] > now else None

    def put(self, key: K, value: V, now: float) -> None:
        self._entries[key] = (now + self.ttl_s, value)
        if len(self._entries) > self.max_entries:
            self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
            while len(self._entries) > self.max_entries:
                del self._entries[next(iter(self._entries))]

    def drop(self, key: K) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()


_FLAGS: dict[tuple[str, ...], dict[str, bool]] = {}  # the viewer's active kinds -> their flags (a few shapes)


def _flags(kinds: tuple[str, ...]) -> dict[str, bool]:
    found = _FLAGS.get(kinds)
    if found is None:
        found = _FLAGS[kinds] = flags_json(kinds)
    return found


RepostsKey = tuple[str, datetime | None, int, frozenset[str]]  # (viewer, before, limit, hidden)


class InteractionCache:
    """`of_posts` and `reposts_by` (for one viewer) of the interactions read model, served from memory when fresh."""

    def __init__(self, redis: aioredis.Redis, store: InteractionsReadModel, ttl_s: float = TTL_S) -> None:
        self._redis, self._store = redis, store
        self._shared: _TTLMap[str, dict[str, Any]] = _TTLMap(ttl_s, MAX_ENTRIES)  # post -> counts, quote_of
        self._mine: _TTLMap[tuple[str, str], tuple[str, ...]] = _TTLMap(ttl_s, MAX_ENTRIES)  # (viewer, post)
        self._reposts: _TTLMap[RepostsKey, list[dict[str, Any]]] = _TTLMap(ttl_s, 1000)
        self._repost_changes = 0  # announcements of a repost or unrepost so far
        self._in_flight: list[tuple[set[str], set[str]]] = []  # (users, posts) announced during each query
        self._ready = asyncio.Event()
        self._parts: SingleFlight[dict[str, Parts]] = SingleFlight()  # one query for concurrent identical misses
        self._post_reads: SingleFlight[tuple[PostView, Parts] | None] = SingleFlight()
        self._repost_reads: SingleFlight[list[dict[str, Any]]] = SingleFlight()
        self._task: asyncio.Task[None] | None = None
        # (viewer, post) -> (post object, counts, flags, the post object with them): see `post_objects`.
        self._objects: dict[tuple[str | None, str], tuple[dict[str, Any], Any, Any, dict[str, Any]]] = {}

    def _usable(self) -> bool:
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        return self._ready.is_set()

    async def of_posts(self, post_ids: Sequence[str], viewer_id: str | None) -> dict[str, dict[str, Any]]:
        """post id -> the fields its post object gains (as `PostgresInteractions.of_posts`)."""
        if not self._usable():
            return await self._store.of_posts(post_ids, viewer_id)
        now = time.monotonic()
        shared, mine = self._shared.get, self._mine.get
        answer: dict[str, dict[str, Any]] = {}
        missing = []
        for post_id in post_ids:
            counts = shared(post_id, now)
            kinds = mine((viewer_id, post_id), now) if viewer_id else ()
            if counts is None or kinds is None:
                missing.append(post_id)
            else:
                answer[post_id] = {**counts, **_flags(kinds)} if viewer_id else dict(counts)
        if missing:
            read = functools.partial(self._parts_of_posts, missing, viewer_id, now)
            for post_id, (counts, kinds) in (await self._parts.run((tuple(missing), viewer_id), read)).items():
                answer[post_id] = {**counts, **_flags(kinds)} if viewer_id else dict(counts)
        return answer

    async def post_objects(
        self, items: list[dict[str, Any]], viewer_id: str | None, blank: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """`items` (post objects) with the fields `of_posts` gives them (`blank` for posts nobody interacted with).

        A page read again is mostly the same post objects with the same cached counts and flags: the object built
        for a viewer is kept, and handed out again while the post object, its counts and the viewer's flags are
        the very ones it was built from (fresh in this cache: an announced change or `ttl_s` replaces them). The
        objects handed out are shared: callers never change them."""
        now = time.monotonic()
        shared, mine, objects = self._shared.get, self._mine.get, self._objects
        out: list[dict[str, Any] | None] = []
        missing: list[str] = []
        for post in items:
            key = (viewer_id, post["id"])
            kept = objects.get(key)
            if (
                kept is not None
                and kept[0] is post
                and kept[1] is shared(key[1], now)
                and (viewer_id is None or kept[2] is mine(key, now))  # type: ignore[arg-type]
            ):
                out.append(kept[3])
            else:
                out.append(None)
                missing.append(key[1])
        if not missing:
            return out  # type: ignore[return-value]  # no None left
        found = await self.of_posts(missing, viewer_id)
        if len(objects) > MAX_ENTRIES:
            objects.clear()
        for i, post in enumerate(items):
            if out[i] is not None:
                continue
            key = (viewer_id, post["id"])
            counts, kinds = shared(key[1], now), mine(key, now) if viewer_id else None  # type: ignore[arg-type]
            if counts is None or (viewer_id is not None and kinds is None):  # not kept (announced meanwhile)
                out[i] = post | found.get(key[1], blank)
                continue
            # Built from the very entries it is checked against when handed out again.
            built = out[i] = post | ({**counts, **_flags(kinds)} if viewer_id else counts)  # type: ignore[arg-type]
            objects[key] = (post, counts, kinds, built)
        return out  # type: ignore[return-value]

    async def post_and_fields(
        self, post_id: str, viewer_id: str | None, posts: PostReadModel
    ) -> tuple[PostView | None, dict[str, Any]]:
        """A live post (None when unknown or deleted) and the fields it gains (as `of_posts`): from memory when fresh
        (then only the post is read, from `posts`), else both in one query, whose parts are kept as `of_posts` keeps
        its own."""
        if not self._usable():
            found = await self._store.post_and_parts(post_id, viewer_id)
            return (found[0], self._fields(*found[1], viewer_id)) if found is not None else (None, {})
        now = time.monotonic()
        counts = self._shared.get(post_id, now)
        kinds = self._mine.get((viewer_id, post_id), now) if viewer_id else ()
        if counts is not None and kinds is not None:
            return await posts.get(post_id), self._fields(counts, kinds, viewer_id)
        read = functools.partial(self._post_and_parts, post_id, viewer_id, now)
        found = await self._post_reads.run((post_id, viewer_id), read)
        if found is None:
            return None, {}
        post, (counts, kinds) = found
        return post, self._fields(counts, kinds, viewer_id)

    @staticmethod
    def _fields(counts: dict[str, Any], kinds: tuple[str, ...], viewer_id: str | None) -> dict[str, Any]:
        return {**counts, **_flags(kinds)} if viewer_id else dict(counts)

    async def _post_and_parts(self, post_id: str, viewer_id: str | None, now: float) -> tuple[PostView, Parts] | None:
        """The store's post and parts, kept as `_parts_of_posts` keeps its answer."""
        async with self._watching() as (users, posts):
            found = await self._store.post_and_parts(post_id, viewer_id)
            if found is not None:
                self._keep({post_id: found[1]}, viewer_id, users, posts, now)
        return found

    async def _parts_of_posts(self, post_ids: Sequence[str], viewer_id: str | None, now: float) -> dict[str, Parts]:
        """The store's answer, kept for the posts and users not announced while it was read. It is kept here, in
        the read's own task and before its watch ends: its callers resume a turn of the event loop later, after
        an announcement that came meanwhile has been dispatched, and would keep what that announcement dropped."""
        async with self._watching() as (users, posts):
            parts = await self._store.parts_of_posts(post_ids, viewer_id)
            self._keep(parts, viewer_id, users, posts, now)
        return parts

    def _keep(
        self, parts: dict[str, Parts], viewer_id: str | None, users: set[str], posts: set[str], now: float
    ) -> None:
        for post_id, (counts, kinds) in parts.items():
            if post_id not in posts:
                self._shared.put(post_id, counts, now)
            if viewer_id and viewer_id not in users:
                self._mine.put((viewer_id, post_id), kinds, now)

    async def reposts_by(
        self, viewer_id: str, before: datetime | None, limit: int, hidden: Collection[str] = ()
    ) -> list[dict[str, Any]]:
        """What the viewer and whom they follow (except the `hidden`) reposted (as `PostgresInteractions.reposts_by`
        for one id)."""
        if not self._usable():
            return await self._store.reposts_by(viewer_id, before, limit, sorted(hidden))
        now, key = time.monotonic(), (viewer_id, before, limit, frozenset(hidden))
        found = self._reposts.get(key, now)
        if found is None:
            changes = self._repost_changes
            read = functools.partial(self._store.reposts_by, viewer_id, before, limit, sorted(hidden))
            found = await self._repost_reads.run((key, changes), read)
            if changes == self._repost_changes:  # no repost moved while the query ran
                self._reposts.put(key, found, now)
        return found

    def _watching(self) -> _Watch:
        return _Watch(self._in_flight)

    def _dispatch(self, raw: str) -> None:
        try:
            changes = [(str(user), str(post), str(kind)) for user, post, kind in orjson.loads(raw)["changes"]]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return
        users, posts = {user for user, _, _ in changes}, {post for _, post, _ in changes}
        for watched_users, watched_posts in self._in_flight:
            watched_users |= users
            watched_posts |= posts
        for user_id, post_id, kind in changes:
            self._shared.drop(post_id)
            self._mine.drop((user_id, post_id))
            if kind == "repost":
                self._repost_changes += 1
                self._reposts.clear()

    async def close(self) -> None:
        """Stop the subscriber task (the app's shutdown)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _clear(self) -> None:
        self._objects.clear()
        self._shared.clear()
        self._mine.clear()
        self._reposts.clear()
        self._repost_changes += 1

    async def _run(self) -> None:
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    self._clear()  # announcements may have been missed while unsubscribed
                    self._ready.set()
                    while True:
                        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                        if message is not None and message["type"] == "message":
                            self._dispatch(message["data"])
            except (RedisError, OSError) as exc:
                log.warning("interaction cache lost Redis; reads go to the store", error=str(exc))
            finally:
                self._ready.clear()
            await asyncio.sleep(RETRY_S)


class _Watch:
    """Collects the users and posts announced while a query runs (so its answer is not cached for them)."""

    def __init__(self, in_flight: list[tuple[set[str], set[str]]]) -> None:
        self._in_flight = in_flight
        self._sets: tuple[set[str], set[str]] = (set(), set())

    async def __aenter__(self) -> tuple[set[str], set[str]]:
        self._in_flight.append(self._sets)
        return self._sets

    async def __aexit__(self, *exc: object) -> None:
        self._in_flight.remove(self._sets)
