"""Likes, reposts, bookmarks and quotes: the consumer's rules (duplicates, out-of-order events, deletes) on its
handlers, and the API end to end through the pipeline (counts and viewer flags on every post object, pages, replay).
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
import redis.asyncio as aioredis
from starlette.applications import Starlette

from chirp.settings import Settings
from consumers import interactions
from consumers.runtime import Context
from gateway.interaction_cache import InteractionCache
from schemas.events import (
    InteractionData,
    PostDeleted,
    PostDeletedData,
    PostLike,
    PostParsed,
    PostParsedData,
    PostRepost,
    new_id,
)
from store.interactions import _OF_POSTS, Change, Parts, PostgresInteractions
from store.posts import PostView
from tests.conftest import eventually
from tests.integration.helpers import login, unique_handle

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def ctx(settings: Settings, pg: asyncpg.Pool, redis_client: aioredis.Redis) -> Context:
    return Context(settings=settings, pg=pg, redis=redis_client, publisher=None)  # type: ignore[arg-type]


def like(user_id: str, post_id: str, seconds: int, *, undo: bool = False) -> PostLike:
    data = InteractionData(user_id=user_id, post_id=post_id)
    return PostLike(
        type="post-unliked" if undo else "post-liked", occurred_at=T0 + timedelta(seconds=seconds), payload=data
    )


async def counters(pg: asyncpg.Pool, post_id: str) -> tuple[int, int, int] | None:
    row = await pg.fetchrow(
        "SELECT like_count, repost_count, quote_count FROM post_counters WHERE post_id = $1", post_id
    )
    return tuple(row) if row else None  # type: ignore[return-value]


async def rows(pg: asyncpg.Pool, post_id: str) -> list[tuple[Any, ...]]:
    found = await pg.fetch("SELECT kind, user_id, active FROM interactions WHERE post_id = $1 ORDER BY 1, 2", post_id)
    return [tuple(r) for r in found]


async def test_duplicates_and_any_order_leave_the_same_counts(ctx: Context) -> None:
    post_id = new_id()
    # Three users: ann likes, unlikes, likes again (liked); bob likes then unlikes (not liked); cy likes (liked).
    events = [like("ann", post_id, 1), like("ann", post_id, 2, undo=True), like("ann", post_id, 3)]
    events += [like("bob", post_id, 1), like("bob", post_id, 5, undo=True), like("cy", post_id, 4)]
    states = []
    for seed in range(6):
        shuffled = random.Random(seed).sample(events, len(events))
        await ctx.pg.execute("DELETE FROM interactions WHERE post_id = $1", post_id)
        await ctx.pg.execute("DELETE FROM post_counters WHERE post_id = $1", post_id)
        if seed == 0:  # the whole lot as one batch
            await interactions.on_likes(shuffled, ctx)
        for event in shuffled:  # one by one, each event twice
            await interactions.on_likes([event, event], ctx)
        states.append((await counters(ctx.pg, post_id), await rows(ctx.pg, post_id)))
    assert all(state == states[0] for state in states)
    assert states[0][0] == (2, 0, 0)
    assert [r for r in states[0][1] if r[2]] == [("like", "ann", True), ("like", "cy", True)]


async def test_a_delete_drops_the_interactions_and_later_ones_change_nothing(ctx: Context) -> None:
    post_id, quoted = new_id(), new_id()
    await interactions.on_likes([like("ann", post_id, 1)], ctx)
    repost = PostRepost(payload=InteractionData(user_id="bob", post_id=post_id), occurred_at=T0)
    await interactions.on_reposts([repost], ctx)
    quote = PostParsed(
        payload=PostParsedData(
            post_id=post_id, author_id="a", body="q", html="<p>q</p>", text="q", quote_of=quoted, created_at=T0
        )
    )
    await interactions.on_post_parsed([quote, quote], ctx)
    assert await counters(ctx.pg, post_id) == (1, 1, 0)
    assert await counters(ctx.pg, quoted) == (0, 0, 1), "a quote counts once"
    deleted = PostDeleted(payload=PostDeletedData(post_id=post_id, author_id="a"))
    await interactions.on_post_deleted([deleted], ctx)
    assert await counters(ctx.pg, post_id) == (0, 0, 0) and await rows(ctx.pg, post_id) == []
    assert await counters(ctx.pg, quoted) == (0, 0, 0), "a deleted quote no longer counts"
    await interactions.on_likes([like("cy", post_id, 9)], ctx)
    await interactions.on_post_parsed([quote], ctx)
    await interactions.on_post_deleted([deleted], ctx)
    assert await counters(ctx.pg, post_id) == (0, 0, 0) and await rows(ctx.pg, post_id) == []
    assert await counters(ctx.pg, quoted) == (0, 0, 0)


class RoundTrips:
    """A pool that notes each call that reaches PostgreSQL (a connection taken for a transaction counts as one)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.calls: list[str] = []

    async def execute(self, *args: Any) -> str:
        self.calls.append("execute")
        return await self.pool.execute(*args)

    def acquire(self) -> Any:
        self.calls.append("acquire")
        return self.pool.acquire()

    async def fetch(self, *args: Any) -> list[asyncpg.Record]:
        self.calls.append("fetch")
        return await self.pool.fetch(*args)


async def test_a_batch_of_likes_is_one_round_trip_and_concurrent_batches_count_every_like(pg: asyncpg.Pool) -> None:
    posts = sorted(new_id() for _ in range(5))
    traced = RoundTrips(pg)
    first = [Change(p, "like", "u0", True, T0) for p in posts] + [Change(posts[0], "repost", "u0", True, T0)]
    await PostgresInteractions(traced).apply(first)  # type: ignore[arg-type]
    assert traced.calls == ["execute"], "BEGIN, locks, upsert and COMMIT are one call"

    async def batch(user: int) -> None:  # each in its own order of posts: the locks are taken in id order
        shuffled = random.Random(user).sample(posts, len(posts))
        await PostgresInteractions(pg).apply([Change(p, "like", f"u{user}", True, T0) for p in shuffled])

    await asyncio.gather(*(batch(user) for user in range(1, 21)))
    assert [await counters(pg, p) for p in posts] == [(21, 1, 0)] + [(21, 0, 0)] * 4


async def test_a_page_of_20_posts_is_one_query_and_100k_likes_cost_what_one_does(pg: asyncpg.Pool) -> None:
    """Counts and the viewer's flags of a whole page come in one query, and a post liked by 100,000 people reads as
    cheaply as one liked by one (counters, not counting at read time; the flags looked up by the viewer)."""
    big, small, *others = sorted(new_id() for _ in range(20))
    viewer = f"v-{new_id()}"
    await pg.execute(
        "INSERT INTO interactions SELECT $1, 'like', 'fan-' || g, true, $2 FROM generate_series(1, 100000) g", big, T0
    )
    await pg.execute("INSERT INTO post_counters (post_id, like_count) VALUES ($1, 100000)", big)
    await pg.execute("ANALYZE interactions")  # as autovacuum would: the planner knows the post is liked by many
    await PostgresInteractions(pg).apply(
        [Change(small, "like", viewer, True, T0), Change(big, "bookmark", viewer, True, T0)]
        + [Change(p, "repost", viewer, True, T0) for p in others[:5]]
    )
    traced = RoundTrips(pg)
    page = await PostgresInteractions(traced).of_posts([big, small, *others], viewer)  # type: ignore[arg-type]
    assert traced.calls == ["fetch"]
    assert (page[big]["like_count"], page[big]["liked_by_me"], page[big]["bookmarked_by_me"]) == (100000, False, True)
    assert (page[small]["like_count"], page[small]["liked_by_me"]) == (1, True)
    assert [page[p]["reposted_by_me"] for p in others] == [True] * 5 + [False] * 13

    async def blocks(post_id: str) -> int:
        """Buffers the page query touches for this one post."""
        plan = await pg.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {_OF_POSTS}", [post_id], viewer)
        top = (orjson.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]
        return int(top["Shared Hit Blocks"] + top["Shared Read Blocks"])

    assert await blocks(big) <= await blocks(small) + 2


# End to end ---------------------------------------------------------------------------------------------------


async def user(client: httpx.AsyncClient, prefix: str) -> tuple[str, dict[str, str]]:
    handle = unique_handle(prefix)
    headers = await login(client, handle)
    await eventually(lambda: client.get(f"/api/users/{handle}"), until=lambda r: r.status_code == 200)
    return handle, headers


async def post(client: httpx.AsyncClient, headers: dict[str, str], body: str, **extra: str) -> str:
    response = await client.post("/api/posts", json={"body": body, **extra}, headers={**headers, "Prefer": "wait"})
    assert response.status_code == 202, response.text
    post_id = response.json()["id"]
    await eventually(lambda: client.get(f"/api/posts/{post_id}"), until=lambda r: r.status_code == 200)
    return post_id


async def seen(client: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None, **expected: Any) -> Any:
    """The post object at `url` (a post, or the first item of a page) once it shows `expected`."""

    async def get() -> dict[str, Any]:
        body = (await client.get(url, headers=headers)).json()
        return (body["items"] or [{}])[0] if "items" in body else body

    return await eventually(get, until=lambda p: all(p.get(k) == v for k, v in expected.items()), timeout=30)


pipelined = pytest.mark.usefixtures("pipeline")


@pipelined
async def test_like_repost_bookmark_through_the_api(client: httpx.AsyncClient) -> None:
    author, author_headers = await user(client, "ia")
    _, fan = await user(client, "ib")
    post_id = await post(client, author_headers, "like me #ilike" + new_id()[-6:].lower())
    for kind in ("like", "repost", "bookmark"):
        for _ in range(2):  # twice: still one
            response = await client.post(f"/api/posts/{post_id}/{kind}", headers=fan)
            assert response.status_code == 202 and response.json() == {"id": post_id, "status": "accepted"}
    mine = {"liked_by_me": True, "reposted_by_me": True, "bookmarked_by_me": True}
    url = f"/api/posts/{post_id}"
    found = await seen(client, url, fan, like_count=1, repost_count=1, **mine)
    assert found["quote_count"] == 0 and found["reply_count"] == 0
    anonymous = (await client.get(url)).json()
    assert anonymous["like_count"] == 1 and "liked_by_me" not in anonymous
    assert (await client.get(url, headers=author_headers)).json()["liked_by_me"] is False
    # Every list carries them, for the viewer
    for page in ("/api/posts?limit=50", f"/api/users/{author}/posts"):
        items = (await client.get(page, headers=fan)).json()["items"]
        [item] = [p for p in items if p["id"] == post_id]
        assert (item["like_count"], item["repost_count"], item["liked_by_me"]) == (1, 1, True)
    await seen(client, f"/api/search?q={found['hashtags'][0]}", fan, id=post_id, like_count=1, liked_by_me=True)
    await client.post(f"/api/users/{author}/follow", headers=fan)
    await seen(client, "/api/timeline", fan, id=post_id, like_count=1, reposted_by_me=True)

    for kind in ("like", "repost", "bookmark"):
        for _ in range(2):  # undoing twice, or what was never done, is a no-op 202
            assert (await client.delete(f"/api/posts/{post_id}/{kind}", headers=fan)).status_code == 202
    off = {"liked_by_me": False, "reposted_by_me": False, "bookmarked_by_me": False}
    await seen(client, url, fan, like_count=0, repost_count=0, **off)

    for method in ("POST", "DELETE"):
        for kind in ("like", "repost", "bookmark"):
            assert (await client.request(method, f"/api/posts/{new_id()}/{kind}", headers=fan)).status_code == 404
            assert (await client.request(method, f"{url}/{kind}")).status_code == 401


@pipelined
async def test_the_cached_timeline_shows_a_like_once_it_is_applied(
    client: httpx.AsyncClient, app: Starlette, redis_client: aioredis.Redis, pg: asyncpg.Pool
) -> None:
    """The timeline's interactions are cached (here for 10 minutes), yet one's own like, and another's, show as
    soon as the read model has them: the consumer's announcement drops the cached entries."""
    state = app.state.chirp
    await state.interaction_cache.close()
    state.interaction_cache = InteractionCache(state.redis, state.interactions, ttl_s=600)
    author, author_headers = await user(client, "ic")
    _, fan = await user(client, "ie")
    _, other = await user(client, "if")
    post_id = await post(client, author_headers, "cached counts")
    await client.post(f"/api/users/{author}/follow", headers=fan)
    await seen(client, "/api/timeline", fan, id=post_id, like_count=0, liked_by_me=False)
    for headers, count in ((fan, 1), (other, 2)):
        assert (await client.post(f"/api/posts/{post_id}/like", headers=headers)).status_code == 202
        await seen(client, f"/api/posts/{post_id}", fan, like_count=count)
        expected = (post_id, count, True)
        await eventually(
            lambda: client.get("/api/timeline", headers=fan),
            until=lambda r, want=expected: (
                tuple(r.json()["items"][0][k] for k in ("id", "like_count", "liked_by_me")) == want
            ),
            timeout=1.0,
        )


class CountingJoined(PostgresInteractions):
    """The store, counting its reads of a post with its interactions."""

    joined = 0

    async def post_and_parts(self, post_id: str, viewer_id: str | None) -> tuple[PostView, Parts] | None:
        self.joined += 1
        return await super().post_and_parts(post_id, viewer_id)


@pipelined
async def test_a_post_read_again_takes_its_interactions_from_the_cache_and_shows_changes_at_once(
    client: httpx.AsyncClient, app: Starlette, pg: asyncpg.Pool
) -> None:
    """`GET /api/posts/{id}` reads the post with its interactions in one query, then, while they are fresh, only the
    post: the interactions come from the process's cache, as the timeline's do (here for 10 minutes). A like, and
    the deletion of the post it quotes, still show at once: the consumer announces both."""
    state = app.state.chirp
    store = CountingJoined(pg)
    await state.interaction_cache.close()
    state.interaction_cache = InteractionCache(state.redis, store, ttl_s=600)
    try:
        _, author = await user(client, "ig")
        _, fan = await user(client, "ih")
        quoted = await post(client, author, "quoted")
        quote = await post(client, author, "quoting", quote_of=quoted)
        shown = await eventually(
            lambda: client.get(f"/api/posts/{quote}", headers=fan), until=lambda r: "quote_of" in r.json()
        )
        first = shown.json()
        assert first["quote_of"]["id"] == quoted and first["liked_by_me"] is False and store.joined >= 1

        async def reads_of_a_second_get() -> int:
            await client.get(f"/api/posts/{quote}", headers=fan)
            before = store.joined
            assert (await client.get(f"/api/posts/{quote}", headers=fan)).json() == first
            return store.joined - before

        await eventually(reads_of_a_second_get, until=lambda n: n == 0, timeout=5)  # once subscribed
        assert (await client.post(f"/api/posts/{quote}/like", headers=fan)).status_code == 202
        await seen(client, f"/api/posts/{quote}", fan, like_count=1, liked_by_me=True)
        assert (await client.delete(f"/api/posts/{quoted}", headers={**author, "Prefer": "wait"})).status_code == 202
        await seen(client, f"/api/posts/{quote}", fan, quote_of={"id": quoted, "deleted": True}, like_count=1)
    finally:
        await state.interaction_cache.close()
        state.interaction_cache = InteractionCache(state.redis, state.interactions)


@pipelined
async def test_deleting_a_post_removes_its_interactions_from_every_view(client: httpx.AsyncClient) -> None:
    _, author = await user(client, "id")
    _, fan = await user(client, "ie")
    post_id = await post(client, author, "soon gone")
    for kind in ("like", "repost", "bookmark"):
        assert (await client.post(f"/api/posts/{post_id}/{kind}", headers=fan)).status_code == 202
    await seen(client, f"/api/posts/{post_id}", fan, like_count=1, repost_count=1, bookmarked_by_me=True)
    await seen(client, "/api/bookmarks", fan, id=post_id)
    assert (await client.delete(f"/api/posts/{post_id}", headers={**author, "Prefer": "wait"})).status_code == 202
    await eventually(lambda: client.get("/api/bookmarks", headers=fan), until=lambda r: r.json()["items"] == [])
    for kind in ("like", "repost", "bookmark"):
        assert (await client.post(f"/api/posts/{post_id}/{kind}", headers=fan)).status_code == 404
        assert (await client.get(f"/api/posts/{post_id}/{kind}s")).status_code == 404


async def chirp(*args: str) -> None:
    """Run an operator command (`chirp ...`) to its end; it must succeed."""
    command = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ops", *args, env={**os.environ}, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(command.communicate(), timeout=600)
    assert command.returncode == 0, stderr.decode()[-2000:]


@pipelined
async def test_counts_are_the_same_through_a_replay_and_a_rebuild_while_the_app_serves(
    client: httpx.AsyncClient, pg: asyncpg.Pool
) -> None:
    _, author = await user(client, "ir")
    fans = [(await user(client, f"ir{i}"))[1] for i in range(4)]
    first, second = await post(client, author, "one"), await post(client, author, "two")
    for i, fan in enumerate(fans[:3]):
        await client.post(f"/api/posts/{first}/like", headers=fan)
        await client.post(f"/api/posts/{second}/repost", headers=fan)
        if i == 0:
            await client.delete(f"/api/posts/{first}/like", headers=fan)
    quote = await post(client, fans[0], "quoting", quote_of=first)
    await seen(client, f"/api/posts/{first}", like_count=2, quote_count=1)
    await seen(client, f"/api/posts/{second}", repost_count=3)
    await seen(client, f"/api/posts/{quote}", fans[0])
    ours = [first, second, quote]

    async def read() -> list[dict[str, Any]]:
        return [(await client.get(f"/api/posts/{p}", headers=fans[0])).json() for p in ours]

    before = await read()
    counters_sql = "SELECT * FROM post_counters WHERE post_id = ANY($1::text[]) ORDER BY post_id"
    table_before = [tuple(r) for r in await pg.fetch(counters_sql, ours)]
    for command in (("replay", "interactions"), ("rebuild", "--all")):
        rebuilding = asyncio.create_task(chirp(*command))
        served = 0
        while not rebuilding.done():  # readers are answered throughout, with the same counts
            assert await read() == before, f"during {' '.join(command)}"
            served += 1
            await asyncio.sleep(0.1)
        await rebuilding
        assert served > 0
        after = await read()
        assert after == before, f"after {' '.join(command)}"
        assert [tuple(r) for r in await pg.fetch(counters_sql, ours)] == table_before
    assert (after[0]["like_count"], after[0]["liked_by_me"], after[1]["repost_count"]) == (2, False, 3)
    assert after[2]["quote_of"]["id"] == first
    # The running consumer writes the tables the rebuild put in place
    assert (await client.post(f"/api/posts/{first}/like", headers=fans[3])).status_code == 202
    await seen(client, f"/api/posts/{first}", like_count=3, quote_count=1)


@pipelined
async def test_quotes_embed_the_quoted_post_until_it_is_deleted(client: httpx.AsyncClient) -> None:
    quoted_handle, author = await user(client, "iq")
    _, quoter = await user(client, "iqq")
    quoted = await post(client, author, "**original**")
    response = await client.post("/api/posts", json={"body": "x", "quote_of": new_id()}, headers=quoter)
    assert response.status_code == 422 and response.json()["error"]["field"] == "quote_of"
    response = await client.post("/api/posts", json={"body": "x", "quote_of": 5}, headers=quoter)
    assert response.status_code == 422 and response.json()["error"]["field"] == "quote_of"
    quote = await post(client, quoter, "look at this", quote_of=quoted)
    found = await eventually(lambda: client.get(f"/api/posts/{quote}"), until=lambda r: "quote_of" in r.json())
    embedded = found.json()["quote_of"]
    assert embedded["id"] == quoted and embedded["html"].strip() == "<p><strong>original</strong></p>"
    assert embedded["text"] == "original" and embedded["author"]["handle"] == quoted_handle
    assert set(embedded) == {"id", "author", "html", "text", "created_at"}
    await seen(client, f"/api/posts/{quoted}", quote_count=1)
    page = (await client.get(f"/api/posts/{quoted}/quotes")).json()
    assert [p["id"] for p in page["items"]] == [quote] and page["next_cursor"] is None

    assert (await client.delete(f"/api/posts/{quoted}", headers={**author, "Prefer": "wait"})).status_code == 202
    await seen(client, f"/api/posts/{quote}", quote_of={"id": quoted, "deleted": True})
    assert (await client.get(f"/api/posts/{quoted}/quotes")).status_code == 404


@pipelined
async def test_bookmarks_likes_and_reposts_pages(client: httpx.AsyncClient) -> None:
    _, headers = await user(client, "ip")
    _, other = await user(client, "ipo")
    likers = [await user(client, f"il{i}") for i in range(3)]
    posts = [await post(client, other, f"post {i}") for i in range(3)]
    for post_id in (posts[1], posts[0], posts[2]):  # bookmark order, not post order
        assert (await client.post(f"/api/posts/{post_id}/bookmark", headers=headers)).status_code == 202
        await seen(client, f"/api/posts/{post_id}", headers, bookmarked_by_me=True)
    first = (await client.get("/api/bookmarks?limit=2", headers=headers)).json()
    assert [p["id"] for p in first["items"]] == [posts[2], posts[0]], "newest bookmark first"
    assert all(p["bookmarked_by_me"] and "like_count" in p for p in first["items"])
    rest = (await client.get(f"/api/bookmarks?limit=2&cursor={first['next_cursor']}", headers=headers)).json()
    assert [p["id"] for p in rest["items"]] == [posts[1]] and rest["next_cursor"] is None
    assert (await client.get("/api/bookmarks")).status_code == 401
    assert (await client.get("/api/bookmarks", headers=other)).json()["items"] == [], "only their owner sees them"
    assert (await client.get("/api/bookmarks?cursor=bad", headers=headers)).status_code == 422

    for _, liker in likers:
        await client.post(f"/api/posts/{posts[0]}/like", headers=liker)
    await client.post(f"/api/posts/{posts[0]}/repost", headers=likers[1][1])
    await seen(client, f"/api/posts/{posts[0]}", like_count=3, repost_count=1)
    page = (await client.get(f"/api/posts/{posts[0]}/likes?limit=2")).json()
    more = (await client.get(f"/api/posts/{posts[0]}/likes?limit=2&cursor={page['next_cursor']}")).json()
    handles = [u["handle"] for u in page["items"] + more["items"]]
    assert sorted(handles) == sorted(h for h, _ in likers) and more["next_cursor"] is None
    assert set(page["items"][0]) == {"handle", "display_name", "avatar_url"}
    reposts = (await client.get(f"/api/posts/{posts[0]}/reposts")).json()
    assert [u["handle"] for u in reposts["items"]] == [likers[1][0]]
    for kind in ("likes", "reposts", "quotes"):
        assert (await client.get(f"/api/posts/{new_id()}/{kind}")).status_code == 404


@pipelined
async def test_reposts_show_in_home_timelines_and_profiles_once_at_the_latest_repost(client: httpx.AsyncClient) -> None:
    _, reader = await user(client, "it")
    (ann, ann_headers), (bob, bob_headers) = await user(client, "ita"), await user(client, "itb")
    _, stranger = await user(client, "its")
    for handle in (ann, bob):
        assert (await client.post(f"/api/users/{handle}/follow", headers=reader)).status_code == 202
    old = await post(client, stranger, "old post, reposted later")
    newer = await post(client, ann_headers, "ann's own post")
    await client.post(f"/api/posts/{old}/repost", headers=ann_headers)
    top = await seen(client, "/api/timeline", reader, id=old)
    assert top["reposted_by"]["handle"] == ann and "reposted_at" in top
    await client.post(f"/api/posts/{old}/repost", headers=bob_headers)
    bob_by = {"handle": bob, "display_name": bob, "avatar_url": ""}  # the dev login names users by their handle
    await seen(client, "/api/timeline", reader, id=old, reposted_by=bob_by)

    async def timeline() -> list[str]:
        items, cursor = [], None
        while True:  # pages of one: the cursor goes through reposts and posts alike
            url = "/api/timeline?limit=1" + (f"&cursor={cursor}" if cursor else "")
            body = (await client.get(url, headers=reader)).json()
            items += [(p["id"], (p.get("reposted_by") or {}).get("handle")) for p in body["items"]]
            if not (cursor := body["next_cursor"]):
                return items

    # The warm timeline follows the timelines consumer, which may apply bob's repost after the cold page showed it.
    listed = await eventually(timeline, until=lambda found: found[:2] == [(old, bob), (newer, None)])
    assert [i for i, _ in listed].count(old) == 1
    profile = (await client.get(f"/api/users/{ann}/posts")).json()["items"]
    assert [(p["id"], p.get("reposted_by", {}).get("handle")) for p in profile[:2]] == [(old, ann), (newer, None)]

    await client.delete(f"/api/posts/{old}/repost", headers=bob_headers)
    await seen(client, "/api/timeline", reader, id=old, reposted_by=top["reposted_by"])
    await client.delete(f"/api/posts/{old}/repost", headers=ann_headers)
    await seen(client, "/api/timeline", reader, id=newer)
    await eventually(timeline, until=lambda found: old not in [i for i, _ in found])  # no followee's repost holds it
