"""The gateway's interaction cache: a page read again needs no query, and an announced change is read at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
import redis.asyncio as aioredis

from chirp.settings import Settings
from consumers import interactions
from consumers.runtime import Context
from gateway.interaction_cache import InteractionCache
from schemas.events import PostParsed, PostParsedData, new_id
from store.interactions import Change, Parts, PostgresInteractions, announce
from store.posts import PostView
from tests.conftest import eventually

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Counting(PostgresInteractions):
    """The store, counting its queries."""

    queries = 0

    async def post_and_parts(self, post_id: str, viewer_id: str | None) -> tuple[PostView, Parts] | None:
        self.queries += 1
        return await super().post_and_parts(post_id, viewer_id)

    async def parts_of_posts(self, post_ids: Sequence[str], viewer_id: str | None) -> dict[str, Parts]:
        self.queries += 1
        return await super().parts_of_posts(post_ids, viewer_id)

    async def reposts_by(
        self, users: Sequence[str] | str, before: datetime | None, limit: int, hidden: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        self.queries += 1
        return await super().reposts_by(users, before, limit, hidden)


async def test_a_page_read_again_needs_no_query_until_a_change_is_announced(
    pg: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    store = Counting(pg)
    cache = InteractionCache(redis_client, store, ttl_s=600)
    viewer, posts = new_id(), [new_id() for _ in range(20)]

    async def queries_of_a_second_read() -> int:
        await cache.of_posts(posts, viewer)
        await cache.reposts_by(viewer, None, 21)
        before = store.queries
        found = await cache.of_posts(posts, viewer)
        await cache.reposts_by(viewer, None, 21)
        assert set(found) == set(posts) and found[posts[0]]["liked_by_me"] is False
        return store.queries - before

    try:
        await eventually(queries_of_a_second_read, until=lambda n: n == 0, timeout=5)  # once subscribed
        like = Change(posts[3], "like", viewer, True, datetime.now(UTC))
        await store.apply([like])
        await announce(redis_client, [(viewer, posts[3], "like")])
        found = await eventually(
            lambda: cache.of_posts(posts, viewer), until=lambda f: f[posts[3]]["liked_by_me"], timeout=2
        )
        assert found[posts[3]]["like_count"] == 1 and found[posts[4]]["liked_by_me"] is False
    finally:
        await cache.close()


async def test_a_quote_applied_after_a_read_shows_at_once(
    settings: Settings, pg: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    """A new quoting post may be read (and cached) before the interactions consumer records it as a quote."""
    cache = InteractionCache(redis_client, PostgresInteractions(pg), ttl_s=600)
    ctx = Context(settings=settings, pg=pg, redis=redis_client, publisher=None)  # type: ignore[arg-type]
    quoted, quoting = new_id(), new_id()
    data = PostParsedData(
        post_id=quoting, author_id="a", body="q", html="<p>q</p>", text="q", quote_of=quoted, created_at=T0
    )
    try:
        await eventually(lambda: cache.of_posts([quoting, quoted], "v"), until=lambda _: cache._ready.is_set())
        before = await cache.of_posts([quoting, quoted], "v")
        assert "quote_of" not in before[quoting] and before[quoted]["quote_count"] == 0
        await interactions.on_post_parsed([PostParsed(payload=data)], ctx)
        after = await eventually(
            lambda: cache.of_posts([quoting, quoted], "v"), until=lambda f: "quote_of" in f[quoting], timeout=2
        )
        assert after[quoting]["quote_of"] == {"id": quoted, "deleted": True} and after[quoted]["quote_count"] == 1
    finally:
        await cache.close()


async def test_a_page_read_again_is_the_same_post_objects_until_a_change_is_announced(
    pg: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    store = Counting(pg)
    cache = InteractionCache(redis_client, store, ttl_s=600)
    viewer, posts = new_id(), [new_id() for _ in range(20)]
    items = [{"id": post_id, "body": "kept"} for post_id in posts]  # as cached_post_json hands them out
    blank = {"like_count": 0, "liked_by_me": False}

    async def read() -> list[dict[str, Any]]:
        return await cache.post_objects(items, viewer, blank)

    try:
        first = await eventually(read, until=lambda _: cache._ready.is_set(), timeout=5)
        first = await read()  # once subscribed: built from what the cache holds
        again = await read()
        assert all(a is b for a, b in zip(first, again, strict=True))  # none built again
        assert again[3]["liked_by_me"] is False and again[3]["body"] == "kept" and "liked_by_me" not in items[3]
        await store.apply([Change(posts[3], "like", viewer, True, datetime.now(UTC))])
        await announce(redis_client, [(viewer, posts[3], "like")])
        after = await eventually(read, until=lambda found: found[3]["liked_by_me"] is True, timeout=5)
        assert after[3] is not first[3] and after[3]["like_count"] == 1
        assert all(a is b for i, (a, b) in enumerate(zip(first, after, strict=True)) if i != 3)
        items[5] = {"id": posts[5], "body": "edited"}  # a new post object (a re-render): a new object for it
        assert (await read())[5]["body"] == "edited"
    finally:
        await cache.close()


async def test_a_quote_shows_its_quoted_post_deleted_once_the_interactions_model_has_the_deletion(
    settings: Settings, pg: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    """The interactions consumer announces a deletion once its own model has it; the posts table may record it a
    moment later. A read in between (which a cache then keeps) must already show the quoted post deleted."""
    ctx = Context(settings=settings, pg=pg, redis=redis_client, publisher=None)  # type: ignore[arg-type]
    quoted, quoting = new_id(), new_id()

    def parsed(post_id: str, quote_of: str | None = None) -> PostParsed:
        data = PostParsedData(
            post_id=post_id, author_id="a", body="b", html="<p>b</p>", text="b", quote_of=quote_of, created_at=T0
        )
        return PostParsed(payload=data)

    await ctx.posts.save_parsed([parsed(quoted), parsed(quoting, quoted)])
    await interactions.on_post_parsed([parsed(quoting, quoted)], ctx)
    store = PostgresInteractions(pg)
    assert (await store.of_posts([quoting], None))[quoting]["quote_of"]["id"] == quoted
    moved = await store.delete_posts({quoted: T0})  # the interactions model's deletion alone
    assert moved == {quoting}, "the quoting post is named for the announcement"
    assert (await store.of_posts([quoting], None))[quoting]["quote_of"] == {"id": quoted, "deleted": True}
    found = await store.post_and_parts(quoting, "v")
    assert found is not None and found[1][0]["quote_of"] == {"id": quoted, "deleted": True}


async def test_concurrent_reads_of_a_post_not_cached_take_one_query(
    settings: Settings, pg: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    """A post many read at once (a link shared widely) costs one query for all of them, then none while fresh."""
    ctx = Context(settings=settings, pg=pg, redis=redis_client, publisher=None)  # type: ignore[arg-type]
    post_id = new_id()
    data = PostParsedData(post_id=post_id, author_id="a", body="b", html="<p>b</p>", text="b", created_at=T0)
    await ctx.posts.save_parsed([PostParsed(payload=data)])
    store = Counting(pg)
    cache = InteractionCache(redis_client, store, ttl_s=600)
    try:
        await eventually(lambda: cache.of_posts([new_id()], None), until=lambda _: cache._ready.is_set())
        before = store.queries
        found = await asyncio.gather(*(cache.post_and_fields(post_id, "v", ctx.posts) for _ in range(20)))
        assert store.queries - before == 1
        assert all(post is not None and post.id == post_id and fields["like_count"] == 0 for post, fields in found)
        await cache.post_and_fields(post_id, "v", ctx.posts)
        assert store.queries - before == 1, "then the counts come from memory"
    finally:
        await cache.close()


class AnnouncedAsItEnds(PostgresInteractions):
    """The store, whose reads end just as a like of theirs is applied: the announcement is dispatched in the next
    turn of the event loop, before the callers of the read resume."""

    cache: InteractionCache

    def like_announced_next(self, post_id: str) -> None:
        raw = orjson.dumps({"changes": [["u-liker", post_id, "like"]]})
        asyncio.get_running_loop().call_soon(self.cache._dispatch, raw)

    async def post_and_parts(self, post_id: str, viewer_id: str | None) -> tuple[PostView, Parts] | None:
        found = await super().post_and_parts(post_id, viewer_id)
        self.like_announced_next(post_id)
        return found

    async def parts_of_posts(self, post_ids: Sequence[str], viewer_id: str | None) -> dict[str, Parts]:
        found = await super().parts_of_posts(post_ids, viewer_id)
        self.like_announced_next(post_ids[0])
        return found


async def test_a_change_announced_as_a_read_ends_is_not_kept_from_that_read(
    settings: Settings, pg: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    """Concurrent reads share one query, run as a task of its own: its callers resume a turn later. What the read
    found is kept before then, so an announcement dispatched in between drops it, and the next read asks again."""
    ctx = Context(settings=settings, pg=pg, redis=redis_client, publisher=None)  # type: ignore[arg-type]
    post_id = new_id()
    data = PostParsedData(post_id=post_id, author_id="a", body="b", html="<p>b</p>", text="b", created_at=T0)
    await ctx.posts.save_parsed([PostParsed(payload=data)])
    store = AnnouncedAsItEnds(pg)
    cache = store.cache = InteractionCache(redis_client, store, ttl_s=600)
    try:
        await eventually(lambda: cache.of_posts([new_id()], None), until=lambda _: cache._ready.is_set())
        await cache.post_and_fields(post_id, None, ctx.posts)
        assert cache._shared.get(post_id, time.monotonic()) is None, "the post's read is not kept"
        await cache.of_posts([post_id], None)
        assert cache._shared.get(post_id, time.monotonic()) is None, "nor the page's"
    finally:
        await cache.close()
