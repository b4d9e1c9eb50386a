"""The gateway's interaction cache: a page read again needs no query, and an announced change is read at once."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
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
