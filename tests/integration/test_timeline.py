"""Home timelines: fan-out on write, deletes, follow backfill and unfollow trim, big accounts merged at read,
cold timelines rebuilt, and replays (handlers called twice, in any order, leave one state)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from consumers import timelines, users
from consumers.runtime import Context
from ops._shadow_redis import shadow_client
from schemas.events import PostDeleted, PostDeletedData, PostParsed, PostParsedData, new_id, utcnow
from store.relations import hidden_keys
from store.timelines import (
    FRESH_TTL_S,
    GLOBAL_BIG,
    CachedPosts,
    PostgresTimelineSource,
    RedisTimelines,
    big_key,
    fresh_key,
    member,
    pair_state,
    pairs_key,
    rebuild,
    recent_key,
    timeline_key,
)
from tests.conftest import eventually, replays_redis
from tests.integration.explore_support import drop, dump
from tests.integration.users_support import (
    api_user,
    at,
    ctx,
    follow_event,
    logged_in,
    post,
    registered,
    wait_user,
)

__all__ = ["api_user", "ctx"]  # module fixtures
pytestmark = pytest.mark.usefixtures("pipeline")


async def read(client: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    response = await client.get("/api/timeline", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def ids_when(client, headers, expected: list[str], *, partial: bool | None = False) -> dict[str, Any]:
    """The first page once it lists exactly `expected` (and, unless None, with that `partial` flag)."""

    def done(body: dict[str, Any]) -> bool:
        return [i["id"] for i in body["items"]] == expected and (partial is None or body["partial"] is partial)

    return await eventually(lambda: read(client, headers, limit=100), until=done, timeout=60)


async def members(ctx: Context, user_id: str) -> list[str]:
    return await ctx.redis.zrange(timeline_key(user_id), 0, -1)


async def follow(client, headers, handle: str, pg, follower: str, following: int) -> None:
    assert (await client.post(f"/api/users/{handle}/follow", headers=headers)).status_code == 202
    await wait_user(pg, follower, until=lambda r: r["following_count"] == following)


async def test_my_posts_and_my_followees_newest_first(client: httpx.AsyncClient, pg) -> None:
    a, _, a_h = await logged_in(client, pg, "ta")
    _, b_handle, b_h = await logged_in(client, pg, "tb")
    _, _, c_h = await logged_in(client, pg, "tc")
    await follow(client, a_h, b_handle, pg, a, 1)
    p1 = await post(client, b_h, "b one")
    await post(client, c_h, "c, not followed")
    p3 = await post(client, a_h, "a mine")
    p4 = await post(client, b_h, "b **two** #tag")
    body = await ids_when(client, a_h, [p4, p3, p1], partial=None)
    first = body["items"][0]
    assert first["author"]["handle"] == b_handle
    assert first["body"] == "b **two** #tag" and "<strong>two</strong>" in first["html"]
    assert set(first) >= {"id", "author", "body", "html", "text", "hashtags", "mentions", "reply_to", "reply_count"}
    await ids_when(client, a_h, [p4, p3, p1])  # and once built, from Redis


async def test_pages_follow_the_cursor(client: httpx.AsyncClient, pg) -> None:
    _, _, a_h = await logged_in(client, pg, "tp")
    posts = [await post(client, a_h, f"post {i}") for i in range(5)]
    await ids_when(client, a_h, posts[::-1])
    seen, cursor = [], None
    for _ in range(3):
        body = await read(client, a_h, limit=2, **({"cursor": cursor} if cursor else {}))
        seen += [i["id"] for i in body["items"]]
        cursor = body["next_cursor"]
    assert seen == posts[::-1] and cursor is None
    assert (await client.get("/api/timeline", params={"cursor": "!!"}, headers=a_h)).status_code == 422
    assert (await client.get("/api/timeline", params={"limit": 101}, headers=a_h)).status_code == 422
    assert (await client.get("/api/timeline")).status_code == 401


async def test_deleted_post_leaves_the_timelines(client: httpx.AsyncClient, ctx, pg) -> None:
    a, _, a_h = await logged_in(client, pg, "td")
    b, b_handle, b_h = await logged_in(client, pg, "te")
    await follow(client, a_h, b_handle, pg, a, 1)
    await read(client, a_h)  # builds a's timeline
    keep, gone = await post(client, b_h, "keep"), await post(client, b_h, "gone")
    await ids_when(client, a_h, [gone, keep])
    assert member(gone, b) in await members(ctx, a)
    assert (await client.delete(f"/api/posts/{gone}", headers=b_h)).status_code == 202
    await ids_when(client, a_h, [keep])
    await eventually(lambda: members(ctx, a), until=lambda m: member(gone, b) not in m)
    await eventually(lambda: members(ctx, b), until=lambda m: member(gone, b) not in m)


async def test_follow_backfills_and_unfollow_trims(client: httpx.AsyncClient, ctx, pg) -> None:
    a, _, a_h = await logged_in(client, pg, "tf")
    b, b_handle, b_h = await logged_in(client, pg, "tg")
    mine = await post(client, a_h, "mine")
    older = [await post(client, b_h, f"before the follow {i}") for i in range(3)]
    await ids_when(client, a_h, [mine])  # built, from Redis
    await follow(client, a_h, b_handle, pg, a, 1)
    await ids_when(client, a_h, [*older[::-1], mine])
    assert {member(p, b) for p in older} <= set(await members(ctx, a)), "backfilled into Redis, not merged"
    assert (await client.delete(f"/api/users/{b_handle}/follow", headers=a_h)).status_code == 202
    await ids_when(client, a_h, [mine])
    assert await members(ctx, a) == [member(mine, a), "~"]


async def test_cold_timeline_is_served_partial_then_rebuilt(client: httpx.AsyncClient, ctx, pg) -> None:
    a, _, a_h = await logged_in(client, pg, "tk")
    _, b_handle, b_h = await logged_in(client, pg, "tl")
    await follow(client, a_h, b_handle, pg, a, 1)
    posts = [await post(client, b_h, "b"), await post(client, a_h, "a"), await post(client, b_h, "b again")]
    await ids_when(client, a_h, posts[::-1])
    await ctx.redis.delete(timeline_key(a), big_key(a))  # as after a flush or an expiry
    cold = await read(client, a_h, limit=2)
    assert cold["partial"] is True
    assert [i["id"] for i in cold["items"]] == [posts[2], posts[1]]
    rest = await read(client, a_h, limit=2, cursor=cold["next_cursor"])
    assert [i["id"] for i in rest["items"]] == [posts[0]]
    await ids_when(client, a_h, posts[::-1])
    assert len(await members(ctx, a)) == 4  # three posts and the built mark


async def test_big_accounts_are_merged_at_read_time(client: httpx.AsyncClient, ctx, pg) -> None:
    a, _, a_h = await logged_in(client, pg, "tm")
    big, big_handle, big_h = await logged_in(client, pg, "tn")
    small, small_handle, small_h = await logged_in(client, pg, "to")
    await follow(client, a_h, big_handle, pg, a, 1)
    await follow(client, a_h, small_handle, pg, a, 2)
    posts = []
    for i in range(3):
        posts += [await post(client, big_h, f"big {i}"), await post(client, small_h, f"small {i}")]
    await ids_when(client, a_h, posts[::-1])
    # With a limit of 0 followers every followee is big: a rebuild keeps their posts out of Redis...
    await ctx.redis.delete(timeline_key(a))
    await rebuild(RedisTimelines(ctx.redis, 800), PostgresTimelineSource(pg), a, max_followers=0)
    assert await members(ctx, a) == ["~"]
    assert await ctx.redis.smembers(big_key(a)) == {big, small}
    # ...and the read path merges them from PostgreSQL, page by page, each post once.
    seen, cursor = [], None
    while True:
        body = await read(client, a_h, limit=4, **({"cursor": cursor} if cursor else {}))
        assert body["partial"] is False
        seen += [i["id"] for i in body["items"]]
        if not (cursor := body["next_cursor"]):
            break
    assert seen == posts[::-1]
    # A post fanned out anyway (this pipeline's limit is higher) is merged and shown once.
    newest = await post(client, big_h, "big, both ways")
    await ids_when(client, a_h, [newest, *posts[::-1]])


async def test_authors_over_the_limit_are_not_fanned_out(client: httpx.AsyncClient, ctx, pg) -> None:
    a, _, a_h = await logged_in(client, pg, "tr")
    b, _, b_h = await logged_in(client, pg, "ts")
    star, star_handle, _ = await logged_in(client, pg, "tt")
    for headers, follower in ((a_h, a), (b_h, b)):
        await follow(client, headers, star_handle, pg, follower, 1)
    small = Context(
        settings=ctx.settings.model_copy(update={"fanout_max_followers": 1}),
        pg=pg,
        redis=ctx.redis,
        publisher=ctx.publisher,
    )
    event = PostParsed(
        payload=PostParsedData(
            post_id=new_id(), author_id=star, body="x", html="<p>x</p>", text="x", created_at=utcnow()
        )
    )
    try:
        await RedisTimelines(ctx.redis, 800).build(star, [], [])  # the author read theirs lately
        await timelines.on_post_parsed([event], small)
        value = member(event.payload.post_id, star)
        assert value in await members(ctx, star), "the author's own timeline always gets it"
        for follower in (a, b):
            assert value not in await members(ctx, follower)
            assert star in await ctx.redis.smembers(big_key(follower)), "followers merge the author from now on"
        assert await ctx.redis.sismember(GLOBAL_BIG, star)
    finally:
        await ctx.redis.srem(GLOBAL_BIG, star)


async def test_replayed_and_reordered_follow_events_leave_one_state(client: httpx.AsyncClient, ctx, pg) -> None:
    a, _, a_h = await logged_in(client, pg, "tu")
    b, _, b_h = await logged_in(client, pg, "tv")
    mine = await post(client, a_h, "mine")
    theirs = [await post(client, b_h, f"b {i}") for i in range(2)]
    await ids_when(client, a_h, [mine])
    followed, unfollowed = follow_event(a, b, active=True, when=1), follow_event(a, b, active=False, when=2)
    # Handlers called directly (these events never reach Kafka): the newer unfollow first, then the older follow.
    await timelines.on_user_unfollowed([unfollowed], ctx)
    await timelines.on_user_followed([followed, followed], ctx)
    assert await members(ctx, a) == [member(mine, a), "~"]
    refollowed = follow_event(a, b, active=True, when=3)
    for _ in range(2):
        await timelines.on_user_followed([refollowed, followed], ctx)
        await timelines.on_user_unfollowed([unfollowed], ctx)
        assert await members(ctx, a) == sorted([member(mine, a), *(member(p, b) for p in theirs), "~"])


async def test_replayed_post_events_leave_one_state(client: httpx.AsyncClient, ctx, pg) -> None:
    a, _, a_h = await logged_in(client, pg, "tw")
    await ids_when(client, a_h, [])
    events = [
        PostParsed(
            occurred_at=at(i),
            payload=PostParsedData(post_id=new_id(), author_id=a, body="x", html="x", text="x", created_at=utcnow()),
        )
        for i in range(3)
    ]
    await timelines.on_post_parsed(events, ctx)
    once = await members(ctx, a)
    await timelines.on_post_parsed(events + events[::-1], ctx)
    assert await members(ctx, a) == once
    assert len(once) == 4


async def test_follow_events_win_over_a_lagging_follows_table(client: httpx.AsyncClient, ctx, pg) -> None:
    a, _, a_h = await logged_in(client, pg, "tx")
    b, _, b_h = await logged_in(client, pg, "ty")
    c, _, c_h = await logged_in(client, pg, "tz")
    await ids_when(client, a_h, [])
    # a follows b and unfollows c: events the timelines consumer saw, the follows table not (it says a follows c).
    await pg.execute("INSERT INTO follows VALUES ($1, $2, true, $3)", a, c, at(1))
    await timelines.on_user_followed([follow_event(a, b, active=True, when=2)], ctx)
    await timelines.on_user_unfollowed([follow_event(a, c, active=False, when=2)], ctx)
    from_c = await post(client, c_h, "c, unfollowed")
    from_b = await post(client, b_h, "b, followed")
    await ids_when(client, a_h, [from_b])
    assert member(from_c, c) not in await members(ctx, a)
    # A rebuild follows the same truth.
    await ctx.redis.delete(timeline_key(a))
    source = PostgresTimelineSource(pg)
    await rebuild(RedisTimelines(ctx.redis, 800), source, a, max_followers=5000)
    assert await source.follow_rows(a) == {c: (pair_state(at(1), True), 0)}
    assert await members(ctx, a) == [member(from_b, b), "~"]


async def test_follows_the_table_already_shows_leave_no_recent_entry(ctx, pg) -> None:
    """Behind an up-to-date follows table (a replay after the users rebuild) the recent hashes stay empty; an entry
    made while the table lagged is still brought up to date, so it never outvotes the table with an old follow."""
    a, b, c = (f"u-{new_id()}" for _ in range(3))
    await pg.execute("INSERT INTO follows VALUES ($1, $2, true, $3), ($1, $4, false, $5)", a, b, at(1), c, at(2))
    await timelines.on_user_followed([follow_event(a, b, active=True, when=1)], ctx)
    await timelines.on_user_followed([follow_event(a, c, active=True, when=1)], ctx)  # the table shows a newer one
    assert await ctx.redis.hgetall(recent_key(b)) == {}
    assert await ctx.redis.hgetall(recent_key(c)) == {}
    # The table lags: the follow is recorded; then the table catches up and the unfollow updates that entry.
    d = f"u-{new_id()}"
    await timelines.on_user_followed([follow_event(d, b, active=True, when=3)], ctx)
    assert await ctx.redis.hgetall(recent_key(b)) == {d: pair_state(at(3), True)}
    await pg.execute("INSERT INTO follows VALUES ($1, $2, false, $3)", d, b, at(4))
    await timelines.on_user_unfollowed([follow_event(d, b, active=False, when=4)], ctx)
    assert await ctx.redis.hgetall(recent_key(b)) == {d: pair_state(at(4), False)}
    recent = await RedisTimelines(ctx.redis, 800).recent_followers([b])
    assert recent == {b: {d: False}}


def deleted_post(post: PostParsed) -> PostDeleted:
    data = PostDeletedData(post_id=post.payload.post_id, author_id=post.payload.author_id)
    return PostDeleted(payload=data)


def parsed_post(author: str) -> PostParsed:
    data = PostParsedData(post_id=new_id(), author_id=author, body="x", html="x", text="x", created_at=utcnow())
    return PostParsed(payload=data)


async def test_what_the_tables_show_goes_only_to_existing_timelines(ctx, pg) -> None:
    """A missing timeline is rebuilt from the tables when read, so posts and follows they show are not written to
    it; what they do not show yet is, into a timeline that expires unless a rebuild adopts it."""
    author, reader, away, rebuilding, new_follower = (f"u-{new_id()}" for _ in range(5))
    await pg.execute(
        "INSERT INTO follows SELECT f, $1, true, now() FROM unnest($2::text[]) AS f",
        author,
        [reader, away, rebuilding],
    )
    store = RedisTimelines(ctx.redis, 800)
    await store.build(reader, [], [])  # read lately
    await store.prepare(rebuilding)  # a rebuild under way: it has not read the tables yet
    shown, unseen = parsed_post(author), parsed_post(author)
    await pg.execute(
        "INSERT INTO posts (post_id, author_id, created_at) VALUES ($1, $2, now())", shown.payload.post_id, author
    )

    await timelines.on_post_parsed([shown], ctx)
    value = member(shown.payload.post_id, author)
    assert await members(ctx, reader) == [value, "~"]
    assert await members(ctx, rebuilding) == ["!", value]
    assert not await ctx.redis.exists(timeline_key(away)) and not await ctx.redis.exists(timeline_key(author))
    await rebuild(store, PostgresTimelineSource(pg), rebuilding, max_followers=5000)
    assert await members(ctx, rebuilding) == [value, "~"], "the rebuild keeps the write and drops its mark"
    window = await store.window(rebuilding, None, 10, hidden_keys(rebuilding))
    assert window is not None and window.post_ids == [shown.payload.post_id]

    await timelines.on_post_parsed([unseen], ctx)  # the posts table has not caught up with this one
    other = member(unseen.payload.post_id, author)
    assert other in await members(ctx, reader) and not await ctx.redis.exists(timeline_key(away))
    assert await ctx.redis.zrange(fresh_key(author), 0, -1) == [other], "kept for rebuilds, for a few minutes"
    assert 0 < await ctx.redis.ttl(fresh_key(author)) <= FRESH_TTL_S
    await rebuild(store, PostgresTimelineSource(pg), away, max_followers=5000)
    assert await members(ctx, away) == sorted([value, other, "~"])
    late = f"u-{new_id()}"
    await store.build(late, [], [])
    await timelines.on_user_followed([follow_event(late, author, active=True, when=1)], ctx)
    assert await members(ctx, late) == sorted([value, other, "~"]), "a backfill takes the fresh posts too"
    await timelines.on_post_deleted([deleted_post(unseen)], ctx)
    assert other not in await members(ctx, away) and not await ctx.redis.exists(fresh_key(author))

    await pg.execute("INSERT INTO follows VALUES ($1, $2, true, now())", new_follower, author)
    await timelines.on_user_followed([follow_event(new_follower, author, active=True, when=1)], ctx)
    assert not await ctx.redis.exists(timeline_key(new_follower)), "the table shows it: no backfill into nothing"
    await rebuild(store, PostgresTimelineSource(pg), new_follower, max_followers=5000)
    assert await members(ctx, new_follower) == [value, "~"]


@replays_redis
async def test_a_replay_behind_up_to_date_tables_keeps_only_the_follow_state(ctx, pg) -> None:
    """What `chirp replay timelines` builds after the posts and users rebuilds: no timeline (each is rebuilt from the
    tables on its owner's next read) but the follow state, the same whatever the order or repetition of events."""
    author, reader = f"u-{new_id()}", f"u-{new_id()}"
    await pg.execute("INSERT INTO follows VALUES ($1, $2, true, $3)", reader, author, at(1))
    posts = [parsed_post(author) for _ in range(3)]
    await pg.execute(
        "INSERT INTO posts (post_id, author_id, created_at) SELECT unnest($1::text[]), $2, now()",
        [p.payload.post_id for p in posts],
        author,
    )
    follow = follow_event(reader, author, active=True, when=1)
    roots = [f"~test-tl:{new_id()}:", f"~test-tl:{new_id()}:"]
    states = []
    try:
        for root, repeat in zip(roots, (1, 2), strict=True):
            shadow = await shadow_client(ctx.settings.redis_url, ("chirp:tl:",), root)
            replaying = Context(settings=ctx.settings, pg=pg, redis=shadow, publisher=ctx.publisher)
            for _ in range(repeat):  # the second namespace gets every event twice, posts first
                if repeat == 2:
                    await timelines.on_post_parsed(posts, replaying)
                await timelines.on_user_followed([follow], replaying)
                await timelines.on_post_parsed(posts, replaying)
            states.append(await dump(ctx.redis, root))
            if repeat == 1:
                built = RedisTimelines(shadow, 800)
                await rebuild(built, PostgresTimelineSource(pg), reader, max_followers=5000)
                newest = sorted(member(p.payload.post_id, author) for p in posts)
                assert await shadow.zrange(timeline_key(reader), 0, -1) == [*newest, "~"]
            await shadow.aclose()
        assert states[0] == states[1]
        assert list(states[0]) == [pairs_key(reader)], "the follow state, no timeline"
    finally:
        for root in roots:
            await drop(ctx.redis, root)


@replays_redis
async def test_with_no_timeline_anywhere_the_big_authors_are_the_same(ctx, pg) -> None:
    """A replay's shadow copy has no timeline, so fan-out reads no follower lists there; which authors are big
    (more followers than the limit, counting a follow the table does not show yet) must come out as with timelines.
    Registered authors are judged by their row's count, the others by their follows."""
    big, small, growing, big_unregistered = (f"u-{new_id()}" for _ in range(4))
    pairs = [(f"f-{new_id()}", a) for a in (big, big, small, growing, big_unregistered, big_unregistered)]
    await pg.execute(
        "INSERT INTO follows SELECT f, a, true, now() FROM unnest($1::text[], $2::text[]) AS x(f, a)",
        [f for f, _ in pairs],
        [a for _, a in pairs],
    )
    await users.on_user_registered([registered(user_id=u) for u in (big, small, growing)], ctx)
    posts = [parsed_post(a) for a in (big, small, growing, big_unregistered)]
    found, roots = [], [f"~test-tl:{new_id()}:", f"~test-tl:{new_id()}:"]
    try:
        for root, with_timelines in zip(roots, (False, True), strict=True):
            shadow = await shadow_client(ctx.settings.redis_url, ("chirp:tl:",), root)
            limited = ctx.settings.model_copy(update={"fanout_max_followers": 1})
            store = RedisTimelines(shadow, 800)
            await shadow.hset(recent_key(growing), f"f-{new_id()}", pair_state(utcnow(), True))
            if with_timelines:
                await store.prepare(f"u-{new_id()}")  # someone's timeline: fan-out takes the follower lists
            assert await store.any_exist() == with_timelines
            await timelines.on_post_parsed(posts, Context(limited, pg, shadow, ctx.publisher))
            assert await store.any_exist() == with_timelines, "fan-out created no timeline"
            found.append(await shadow.smembers(GLOBAL_BIG))
            await shadow.aclose()
        assert found[0] == found[1] == {big, growing, big_unregistered}
    finally:
        for root in roots:
            await drop(ctx.redis, root)


@replays_redis
async def test_timelines_made_before_the_homes_marker_are_adopted_at_start(ctx) -> None:
    """Timelines created before `homes` was kept must still get fan-out: the consumer's setup sets the marker."""
    older, empty = f"~test-tl:{new_id()}:", f"~test-tl:{new_id()}:"
    try:
        shadow = await shadow_client(ctx.settings.redis_url, ("chirp:tl:",), older)
        await shadow.zadd(timeline_key(f"u-{new_id()}"), {"~": 0})  # built by a version without the marker
        store = RedisTimelines(shadow, 800)
        assert not await store.any_exist()
        await timelines.adopt_timelines(Context(ctx.settings, ctx.pg, shadow, ctx.publisher), timelines.consumer)
        assert await store.any_exist(), "fan-out reaches the older timelines again"
        assert not await store.adopt_unmarked(), "once marked, no scan"
        await shadow.aclose()

        shadow = await shadow_client(ctx.settings.redis_url, ("chirp:tl:",), empty)
        await timelines.adopt_timelines(Context(ctx.settings, ctx.pg, shadow, ctx.publisher), timelines.consumer)
        assert not await RedisTimelines(shadow, 800).any_exist(), "no timeline (a replay's shadow copy): no marker"
        await shadow.aclose()
    finally:
        for root in (older, empty):
            await drop(ctx.redis, root)


async def test_post_cache_serves_fresh_views_and_stays_bounded(client: httpx.AsyncClient, pg) -> None:
    _, _, a_h = await logged_in(client, pg, "tc")
    ids = [await post(client, a_h, f"cached {i}") for i in range(3)]
    cache = CachedPosts(PostgresTimelineSource(pg), ttl_s=60, max_entries=2)
    assert [v.body for v in await cache.items(ids[:2], [], None, 10)] == ["cached 1", "cached 0"]
    await pg.execute("UPDATE posts SET body = body || ' (edited)' WHERE post_id = ANY($1::text[])", ids)
    assert [v.body for v in await cache.items(ids[:2], [], None, 10)] == ["cached 1", "cached 0"], "within the TTL"
    views = await cache.items(ids, [], None, 2)
    assert [v.id for v in views] == [ids[2], ids[1]], "newest first, at most the limit"
    assert views[0].body == "cached 2 (edited)"
    assert len(cache._views) == 2
    expired = CachedPosts(PostgresTimelineSource(pg), ttl_s=0)
    assert [v.body for v in await expired.items(ids[:1], [], None, 10)] == ["cached 0 (edited)"]
