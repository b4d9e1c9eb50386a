"""The notifications consumer and its endpoints: the model's rules through its handlers (real Redis and
PostgreSQL), then end to end through the API with every consumer running, and a replay that rebuilds it identically.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import jwt
import pytest
import redis.asyncio as aioredis

from chirp.settings import Settings
from consumers import notifications as model
from consumers.runtime import Context
from schemas.events import (
    AccountDeleted,
    AccountDeletedData,
    FollowData,
    InteractionData,
    NotificationsRead,
    NotificationsReadData,
    PostDeleted,
    PostDeletedData,
    PostLike,
    PostParsed,
    PostParsedData,
    PostRepost,
    UserFollowed,
    UserUnfollowed,
    new_id,
)
from tests.conftest import eventually, replays_redis
from tests.integration.helpers import count_redis_round_trips, forge, login, unique_handle


@pytest.fixture
def ctx(settings: Settings, pg: asyncpg.Pool, redis_client: aioredis.Redis) -> Context:
    return Context(settings=settings, pg=pg, redis=redis_client, publisher=None)  # type: ignore[arg-type]


async def user(ctx: Context, handle: str | None = None) -> tuple[str, str]:
    """(user id, handle): a row in the users read model (as the users consumer writes it)."""
    handle = handle or unique_handle("n")
    user_id = f"u-{new_id()}"
    now = datetime.now(UTC)
    await ctx.pg.execute(
        "INSERT INTO users (user_id, handle, joined_at, profile_at) VALUES ($1, $2, $3, $3)", user_id, handle, now
    )
    return user_id, handle


async def post_row(ctx: Context, author_id: str) -> str:
    """A live post in the posts read model (a parent that replies point at)."""
    post_id = new_id()
    await ctx.pg.execute(
        "INSERT INTO posts (post_id, author_id, body, html, text, created_at) VALUES ($1, $2, 'p', 'p', 'p', now())",
        post_id,
        author_id,
    )
    return post_id


def parsed(
    author_id: str, *handles: str, reply_to: str | None = None, at: datetime | None = None, quote_of: str | None = None
) -> PostParsed:
    data = PostParsedData(
        post_id=new_id(),
        author_id=author_id,
        body="hi",
        html="<p>hi</p>",
        text="hi",
        mentions=tuple(h.lower() for h in handles),
        reply_to=reply_to,
        quote_of=quote_of,
        created_at=at or datetime.now(UTC),
    )
    return PostParsed(payload=data)


def follow(follower: str, followee: str, *, undo: bool = False, at: datetime | None = None) -> UserFollowed:
    cls = UserUnfollowed if undo else UserFollowed
    return cls(payload=FollowData(follower_id=follower, followee_id=followee), occurred_at=at or datetime.now(UTC))  # type: ignore[return-value]


async def items(ctx: Context, user_id: str) -> list[tuple[str, str, list[str], bool]]:
    """(type, post, actors newest first, unread) per item, newest first."""
    ids = await ctx.redis.zrevrange(model.items_key(user_id), 0, -1)
    found = []
    for item_id in ids:
        info = await ctx.redis.hgetall(model.item_key(user_id, item_id))
        actors = await ctx.redis.zrevrange(model.actors_key(user_id, item_id), 0, -1)
        unread = await ctx.redis.zscore(model.unread_key(user_id), item_id) is not None
        found.append((info["type"], info["post"], actors, unread))
    return found


async def test_mentions_replies_and_follows_are_one_item_each_once_and_never_for_oneself(ctx: Context) -> None:
    (ann, ann_h), (bob, bob_h), (cat, cat_h) = await user(ctx), await user(ctx), await user(ctx)
    parent = await post_row(ctx, ann)
    reply = parsed(bob, ann_h.upper(), cat_h, bob_h, reply_to=parent)  # replies to ann, mentions ann, cat, himself
    followed = follow(cat, ann)
    for _ in range(2):  # the same events twice change nothing
        await model.on_post_parsed([reply, reply], ctx)
        await model.on_followed([followed], ctx)
    await model.on_post_parsed([parsed(ann, ann_h, reply_to=parent)], ctx)  # her own reply to herself
    post_id = reply.payload.post_id
    assert await items(ctx, ann) == [("follow", "", [cat], True), ("reply", post_id, [bob], True)]
    assert await items(ctx, cat) == [("mention", post_id, [bob], True)]
    assert await items(ctx, bob) == []
    # A re-rendered post (a new post-parsed event for the same post) notifies nobody again.
    await model.on_post_parsed([reply.model_copy(update={"id": new_id()})], ctx)
    assert len(await items(ctx, ann)) == 2


async def test_a_deleted_post_takes_its_notifications_with_it_even_when_its_events_come_again(ctx: Context) -> None:
    (ann, ann_h), (bob, _) = await user(ctx), await user(ctx)
    post = parsed(bob, ann_h)
    await model.on_post_parsed([post], ctx)
    assert len(await items(ctx, ann)) == 1
    deleted = PostDeleted(payload=PostDeletedData(post_id=post.payload.post_id, author_id=bob))
    await model.on_post_deleted([deleted], ctx)
    await model.on_post_parsed([post], ctx)  # redelivered after the delete
    assert await items(ctx, ann) == []
    assert await ctx.redis.zcard(model.unread_key(ann)) == 0


async def test_a_deleted_post_takes_the_replies_and_quotes_it_was_told_of_as_a_replay_never_tells_them(
    ctx: Context,
) -> None:
    (ann, _), (bob, _), (cat, cat_h) = await user(ctx), await user(ctx), await user(ctx)
    parent = await post_row(ctx, ann)
    reply, quote = parsed(bob, cat_h, reply_to=parent), parsed(bob, quote_of=parent)
    await model.on_post_parsed([reply, quote], ctx)
    assert len(await items(ctx, ann)) == 2
    await ctx.pg.execute("UPDATE posts SET deleted_at = now() WHERE post_id = $1", parent)
    await model.on_post_deleted([PostDeleted(payload=PostDeletedData(post_id=parent, author_id=ann))], ctx)
    assert await items(ctx, ann) == [], "what answered a deleted post is no longer news to its author"
    assert await ctx.redis.zcard(model.unread_key(ann)) == 0
    assert await items(ctx, cat) == [("mention", reply.payload.post_id, [bob], True)], "a mention in a reply stays"
    await model.on_post_parsed([reply, quote], ctx)  # as a replay reads them, once the posts model has the delete
    assert await items(ctx, ann) == []


async def test_an_unfollow_removes_the_follow_whichever_arrives_first(ctx: Context) -> None:
    (ann, _), (bob, _), (cat, _) = await user(ctx), await user(ctx), await user(ctx)
    t0 = datetime.now(UTC)
    await model.on_followed([follow(bob, ann, at=t0)], ctx)
    await model.on_followed([follow(cat, ann, at=t0)], ctx)
    await model.on_unfollowed([follow(bob, ann, undo=True, at=t0 + timedelta(seconds=1))], ctx)
    assert await items(ctx, ann) == [("follow", "", [cat], True)]
    # A replay may read the unfollow before its follow: the follow stays undone; a later follow notifies again.
    await model.on_unfollowed([follow(cat, ann, undo=True, at=t0 + timedelta(seconds=1))], ctx)
    await model.on_followed([follow(cat, ann, at=t0)], ctx)
    assert await items(ctx, ann) == []
    await model.on_followed([follow(cat, ann, at=t0 + timedelta(seconds=2))], ctx)
    assert await items(ctx, ann) == [("follow", "", [cat], True)]


async def test_grouped_types_gather_actors_on_one_item_while_it_is_unread(ctx: Context) -> None:
    (ann, _), *fans = [await user(ctx) for _ in range(6)]
    post_id = await post_row(ctx, ann)
    t0 = int(datetime.now(UTC).timestamp() * 1000)

    def like(fan: str, dt: int) -> model.Note:
        return model.Note(ann, "like", fan, t0 + dt, new_id(), post_id)

    await model._add(ctx, [like(fans[0][0], 0), like(fans[1][0], 1)])
    await model._add(ctx, [like(fans[2][0], 2), like(fans[3][0], 3), like(fans[1][0], 4)])  # fans[1] again: once
    [(kind, post, actors, unread)] = await items(ctx, ann)
    assert (kind, post, unread) == ("like", post_id, True)
    assert actors == [fans[3][0], fans[2][0], fans[1][0], fans[0][0]]
    mark = NotificationsReadData(user_id=ann, up_to_at=datetime.fromtimestamp((t0 + 3) / 1000, UTC))
    await model.on_read(
        [NotificationsRead(payload=mark, occurred_at=datetime.fromtimestamp((t0 + 5) / 1000, UTC))], ctx
    )
    await model._add(ctx, [like(fans[4][0], 10)])  # after the read: a new item
    assert [(i[2], i[3]) for i in await items(ctx, ann)] == [([fans[4][0]], True), (actors, False)]
    await model._retract(ctx, [like(fans[3][0], 20), like(fans[4][0], 20)])  # unlikes
    assert [i[2] for i in await items(ctx, ann)] == [[fans[2][0], fans[1][0], fans[0][0]]]


async def test_a_read_mark_applied_before_its_items_still_reads_them(ctx: Context) -> None:
    (ann, ann_h), (bob, _) = await user(ctx), await user(ctx)
    t0 = datetime.now(UTC)
    mark = NotificationsReadData(user_id=ann, up_to_at=t0)
    await model.on_read([NotificationsRead(payload=mark)], ctx)
    await model.on_post_parsed([parsed(bob, ann_h, at=t0 - timedelta(seconds=1))], ctx)
    await model.on_post_parsed([parsed(bob, ann_h, at=t0 + timedelta(seconds=1))], ctx)
    assert [i[3] for i in await items(ctx, ann)] == [True, False]


def liked(user_id: str, post_id: str, at: datetime, *, undo: bool = False) -> PostLike:
    kind = "post-unliked" if undo else "post-liked"
    return PostLike(type=kind, occurred_at=at, payload=InteractionData(user_id=user_id, post_id=post_id))


def reposted(user_id: str, post_id: str, at: datetime, *, undo: bool = False) -> PostRepost:
    kind = "post-unreposted" if undo else "post-reposted"
    return PostRepost(type=kind, occurred_at=at, payload=InteractionData(user_id=user_id, post_id=post_id))


async def snapshot(ctx: Context, user_id: str) -> list[tuple[str, float, dict, list, bool]]:
    """Everything the API shows of a user's items: (id, time, type and post, actors with times, unread)."""
    found = []
    for item_id, at in await ctx.redis.zrevrange(model.items_key(user_id), 0, -1, withscores=True):
        info = await ctx.redis.hgetall(model.item_key(user_id, item_id))
        actors = await ctx.redis.zrange(model.actors_key(user_id, item_id), 0, -1, withscores=True)
        unread = await ctx.redis.zscore(model.unread_key(user_id), item_id) is not None
        found.append((item_id, at, info, actors, unread))
    return found


async def forget(ctx: Context, user_id: str, post_id: str) -> None:
    """Drop a user's whole notifications model (and the post's references), as a replay starts from nothing."""
    keys = [k async for k in ctx.redis.scan_iter(f"notify:*{user_id}*")] + [model.post_items_key(post_id)]
    await ctx.redis.delete(*keys)


async def test_a_read_mark_between_likes_groups_them_the_same_whichever_topic_is_read_first(ctx: Context) -> None:
    (ann, _), *fans = [await user(ctx) for _ in range(5)]
    post_id = await post_row(ctx, ann)
    t0 = datetime.now(UTC).replace(microsecond=0)
    at = [t0 + timedelta(seconds=i) for i in range(8)]
    before = [liked(fans[0][0], post_id, at[0]), liked(fans[1][0], post_id, at[1])]
    after = [liked(fans[2][0], post_id, at[3]), liked(fans[3][0], post_id, at[4])]
    # The page was viewed at at[2]; a second mark, up to an older item, reads nothing new.
    marks = [
        NotificationsRead(payload=NotificationsReadData(user_id=ann, up_to_at=at[2]), occurred_at=at[2]),
        NotificationsRead(payload=NotificationsReadData(user_id=ann, up_to_at=at[0]), occurred_at=at[5]),
    ]
    orders = {  # live; a replay that reads the likes first; one that reads the marks first; one batch each
        "live": [("likes", before), ("read", marks[:1]), ("likes", after), ("read", marks[1:])],
        "likes first": [("likes", before), ("likes", after), ("read", marks)],
        "marks first": [("read", marks), ("likes", before + after)],
        "newest likes first": [("likes", after[::-1]), ("likes", before[::-1]), ("read", marks)],
        "one at a time": [
            ("likes", before[:1]),
            ("likes", before[1:] + after[:1]),
            ("read", marks),
            ("likes", after[1:]),
        ],
    }
    seen = {}
    for name, steps in orders.items():
        await forget(ctx, ann, post_id)
        for kind, events in steps:
            await (model.on_likes(events, ctx) if kind == "likes" else model.on_read(events, ctx))  # type: ignore[arg-type]
        seen[name] = await snapshot(ctx, ann)
    live = seen["live"]
    assert [(item_id, [a for a, _ in actors], unread) for item_id, _, _, actors, unread in live] == [
        (f"like:{post_id}:{model.ms(at[2])}", [fans[2][0], fans[3][0]], True),  # named after the mark before it
        (f"like:{post_id}", [fans[0][0], fans[1][0]], False),
    ]
    assert {name: found for name, found in seen.items()} == {name: live for name in orders}
    # An unlike of the newer item's first actor leaves the item, with its id, to the other.
    await model.on_likes([liked(fans[2][0], post_id, at[6], undo=True)], ctx)
    newest = (await snapshot(ctx, ann))[0]
    assert (newest[0], [a for a, _ in newest[3]]) == (live[0][0], [fans[3][0]])


async def test_likes_and_reposts_of_a_post_are_one_item_each_and_an_undo_takes_the_actor_away(ctx: Context) -> None:
    (ann, _), (bob, _), (cat, _), (dan, _) = [await user(ctx) for _ in range(4)]
    post_id, other_post = await post_row(ctx, ann), await post_row(ctx, ann)
    t0 = datetime.now(UTC)
    at = [t0 + timedelta(seconds=i) for i in range(10)]
    likes = [liked(bob, post_id, at[0]), liked(cat, post_id, at[1]), liked(ann, post_id, at[2])]  # ann: her own
    for _ in range(2):  # the same events twice change nothing
        await model.on_likes(likes, ctx)
        await model.on_reposts([reposted(dan, post_id, at[3]), reposted(bob, other_post, at[4])], ctx)
    assert await items(ctx, ann) == [
        ("repost", other_post, [bob], True),
        ("repost", post_id, [dan], True),
        ("like", post_id, [cat, bob], True),
    ]
    # In one batch, bob likes then unlikes: only the unlike counts; cat's unlike leaves no item when it was the last.
    await model.on_likes([liked(bob, post_id, at[5]), liked(bob, post_id, at[6], undo=True)], ctx)
    assert [i[2] for i in await items(ctx, ann) if i[0] == "like"] == [[cat]]
    await model.on_reposts([reposted(bob, other_post, at[6], undo=True)], ctx)
    await model.on_likes([liked(cat, post_id, at[7], undo=True)], ctx)
    assert await items(ctx, ann) == [("repost", post_id, [dan], True)]
    assert await ctx.redis.zcard(model.unread_key(ann)) == 1
    # An unlike read before its like (a replay) still wins; a like of a deleted post tells nobody.
    await model.on_likes([liked(bob, post_id, at[6], undo=True), liked(cat, other_post, at[1])], ctx)
    await model.on_post_deleted([PostDeleted(payload=PostDeletedData(post_id=other_post, author_id=ann))], ctx)
    await model.on_likes([liked(bob, post_id, at[5]), liked(dan, other_post, at[8])], ctx)
    assert await items(ctx, ann) == [("repost", post_id, [dan], True)]


async def test_a_mention_an_edit_removes_is_taken_back_and_one_it_adds_notifies_once(ctx: Context) -> None:
    (ann, ann_h), (bob, bob_h), (cat, cat_h), (dan, _) = [await user(ctx) for _ in range(4)]
    t0 = datetime.now(UTC) - timedelta(minutes=1)
    post = parsed(dan, ann_h, bob_h, at=t0)

    def edit(*handles: str, seconds: int) -> PostParsed:
        data = post.payload.model_copy(update={"mentions": handles, "edited_at": t0 + timedelta(seconds=seconds)})
        return PostParsed(payload=data)

    await model.on_post_parsed([post], ctx)
    await model.on_post_parsed([edit(bob_h, cat_h, seconds=1)], ctx)  # ann out, cat in, bob stays
    post_id = post.payload.post_id
    assert await items(ctx, ann) == []
    assert await items(ctx, bob) == [("mention", post_id, [dan], True)]
    assert await items(ctx, cat) == [("mention", post_id, [dan], True)]
    bob_at = await ctx.redis.zscore(model.items_key(bob), post_id)
    # The same edit again, a later edit that keeps them, or the first version read again (a replay) change nothing.
    await model.on_post_parsed([edit(bob_h, cat_h, seconds=1), edit(bob_h, cat_h, seconds=2)], ctx)
    await model.on_post_parsed([post], ctx)
    assert [await items(ctx, u) for u in (ann, bob, cat)] == [[], *[[("mention", post_id, [dan], True)]] * 2]
    assert await ctx.redis.zscore(model.items_key(bob), post_id) == bob_at, "not bumped by an edit that keeps it"
    # An edit that names nobody takes every mention back.
    await model.on_post_parsed([edit(seconds=3)], ctx)
    assert [await items(ctx, u) for u in (ann, bob, cat)] == [[], [], []]
    assert await ctx.redis.zcard(model.unread_key(cat)) == 0


async def test_a_quote_is_one_item_each_and_never_for_oneself(ctx: Context) -> None:
    (ann, ann_h), (bob, _), (cat, cat_h) = await user(ctx), await user(ctx), await user(ctx)
    quoted = await post_row(ctx, ann)
    first, second = parsed(bob, quote_of=quoted), parsed(bob, ann_h, cat_h, quote_of=quoted)  # mentions ann too
    await model.on_post_parsed([first, second, parsed(ann, quote_of=quoted)], ctx)
    await model.on_post_parsed([first], ctx)
    quotes = [("quote", p.payload.post_id, [bob], True) for p in (second, first)]
    assert sorted(await items(ctx, ann)) == sorted(quotes)
    assert await items(ctx, cat) == [("mention", second.payload.post_id, [bob], True)]


async def test_a_user_keeps_their_newest_items_only(ctx: Context) -> None:
    (ann, _), (bob, _) = await user(ctx), await user(ctx)
    t0 = datetime.now(UTC)
    follows = [follow(f"f-{new_id()}", ann, at=t0 + timedelta(milliseconds=i)) for i in range(model.KEPT + 5)]
    await model.on_followed(follows[:-1], ctx)
    post = parsed(bob, quote_of=await post_row(ctx, ann), at=t0 - timedelta(days=1))  # older than every follow
    await model.on_post_parsed([post], ctx)
    await model.on_followed(follows[-1:], ctx)
    ids = await ctx.redis.zrange(model.items_key(ann), 0, -1)
    assert len(ids) == model.KEPT == await ctx.redis.zcard(model.unread_key(ann))
    assert ids[0] == follows[5].id and ids[-1] == follows[-1].id, "the oldest went"
    assert await ctx.redis.smembers(model.post_items_key(post.payload.post_id)) == set()
    assert not await ctx.redis.exists(model.item_key(ann, follows[0].id), model.actors_key(ann, follows[0].id))


async def test_the_records_of_who_was_notified_and_of_undos_stay_bounded(ctx: Context) -> None:
    (ann, _), (bob, _) = await user(ctx), await user(ctx)
    t0 = datetime.now(UTC)
    fans = [f"f-{new_id()}" for _ in range(model.KEPT + 5)]
    await model.on_followed([follow(f, ann, at=t0 + timedelta(milliseconds=i)) for i, f in enumerate(fans)], ctx)
    posts = [await post_row(ctx, ann) for _ in range(5)]
    later = t0 + timedelta(seconds=5)
    await model.on_likes([liked(bob, p, later + timedelta(milliseconds=i)) for i, p in enumerate(posts)], ctx)
    assert await ctx.redis.hlen(model.by_key(ann)) == model.KEPT, "one record per actor of a kept item"
    assert await ctx.redis.hlen(model.groups_key(ann)) == 5
    # Undos of follows that were dropped or never made: only the newest KEPT times are kept.
    undos = [
        follow(f"u-{new_id()}", ann, undo=True, at=later + timedelta(milliseconds=i)) for i in range(model.KEPT + 5)
    ]
    await model.on_unfollowed(undos, ctx)
    assert await ctx.redis.zcard(model.retracted_key(ann)) == model.KEPT
    marks = [
        NotificationsRead(
            payload=NotificationsReadData(user_id=ann, up_to_at=t0 + timedelta(milliseconds=i)),
            occurred_at=later + timedelta(milliseconds=i),
        )
        for i in range(model.KEPT + 5)
    ]
    await model.on_read(marks, ctx)
    assert await ctx.redis.zcard(model.marks_key(ann)) == model.KEPT
    # A deleted post takes its records with it; so does a deleted account.
    await model.on_post_deleted([PostDeleted(payload=PostDeletedData(post_id=posts[0], author_id=ann))], ctx)
    assert await ctx.redis.hlen(model.by_key(ann)) == model.KEPT - 1
    assert await ctx.redis.hlen(model.groups_key(ann)) == 4
    await model.on_account_deleted([AccountDeleted(payload=AccountDeletedData(user_id=ann))], ctx)
    assert [k async for k in ctx.redis.scan_iter(f"notify:*{ann}*")] == []


# End to end ---------------------------------------------------------------------------------------------------


async def page(client: httpx.AsyncClient, headers: dict[str, str], **params: str | int) -> dict:
    response = await client.get("/api/notifications", headers=headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def unread(client: httpx.AsyncClient, headers: dict[str, str]) -> int:
    response = await client.get("/api/notifications/unread", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["count"]


def replay_notifications() -> None:
    """`chirp replay notifications`, as an operator runs it (this run's topics and groups)."""
    cmd = [sys.executable, "-m", "ops", "replay", "notifications"]
    done = subprocess.run(cmd, env={**os.environ}, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@replays_redis
@pytest.mark.usefixtures("pipeline")
async def test_notifications_through_the_api_and_a_replay_rebuilds_them_identically(
    client: httpx.AsyncClient, ctx: Context
) -> None:
    ann, bob, cat = unique_handle("ann"), unique_handle("bob"), unique_handle("cat")
    ann_h, bob_h, cat_h = [await login(client, h) for h in (ann, bob, cat)]
    registered = "SELECT count(*) FROM users WHERE lower(handle) = ANY($1::text[])"
    await eventually(lambda: ctx.pg.fetchval(registered, [ann, bob, cat]), until=lambda n: n == 3, timeout=60)

    assert (await client.post(f"/api/users/{ann}/follow", headers=bob_h)).status_code == 202
    assert (await client.post(f"/api/users/{ann}/follow", headers=cat_h)).status_code == 202
    wait = {"Prefer": "wait=5"}
    created = await client.post("/api/posts", json={"body": "hello"}, headers={**ann_h, **wait})
    parent = created.json()["id"]
    reply = await client.post(
        "/api/posts", json={"body": f"@{ann} hi back, @{cat}", "reply_to": parent}, headers={**bob_h, **wait}
    )
    reply_id = reply.json()["id"]
    mention = await client.post("/api/posts", json={"body": f"ping @{ann.upper()}"}, headers={**cat_h, **wait})
    await client.post("/api/posts", json={"body": f"note to self @{ann}"}, headers={**ann_h, **wait})

    await eventually(lambda: unread(client, ann_h), until=lambda n: n == 4, timeout=60)  # all four are in
    first = await page(client, ann_h, limit=2)
    rest = await page(client, ann_h, cursor=first["next_cursor"], limit=10)
    everything = first["items"] + rest["items"]
    assert [(i["type"], i["post"]["id"] if "post" in i else None) for i in everything] == [
        ("mention", mention.json()["id"]),
        ("reply", reply_id),
        ("follow", None),
        ("follow", None),
    ]
    assert rest["next_cursor"] is None
    assert {i["actors"][0]["handle"] for i in everything[2:]} == {bob, cat}
    item = everything[1]
    assert set(item) == {"id", "type", "actors", "count", "post", "at", "read"}
    assert item["actors"] == [{"handle": bob, "display_name": bob, "avatar_url": item["actors"][0]["avatar_url"]}]
    assert (item["count"], item["read"]) == (1, False)
    assert [i["type"] for i in (await page(client, cat_h))["items"]] == ["mention"]  # named in bob's reply
    assert (await page(client, bob_h))["items"] == []

    # Read up to the reply: it and everything older is read; then all.
    done = await client.post("/api/notifications/read", json={"up_to": item["id"]}, headers=ann_h)
    assert done.status_code == 204
    await eventually(lambda: unread(client, ann_h), until=lambda n: n == 1, timeout=30)
    assert [i["read"] for i in (await page(client, ann_h))["items"]] == [False, True, True, True]
    assert (await client.post("/api/notifications/read", json={}, headers=ann_h)).status_code == 204
    await eventually(lambda: unread(client, ann_h), until=lambda n: n == 0, timeout=30)

    # An unfollow takes its follow away; a deleted post its reply.
    assert (await client.delete(f"/api/users/{ann}/follow", headers=cat_h)).status_code == 202
    assert (await client.delete(f"/api/posts/{reply_id}", headers=bob_h)).status_code == 202
    after = await eventually(lambda: page(client, ann_h), until=lambda p: len(p["items"]) == 2, timeout=60)
    assert [(i["type"], i["actors"][0]["handle"]) for i in after["items"]] == [("mention", cat), ("follow", bob)]

    # Bad input is a 4xx naming the field; the endpoints need a login.
    bad = await client.post("/api/notifications/read", json={"up_to": "nope"}, headers=ann_h)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "up_to"
    bad = await client.post("/api/notifications/read", json={"up_to": 5}, headers=ann_h)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "up_to"
    assert (await client.get("/api/notifications", headers=ann_h, params={"cursor": "bm90"})).status_code == 422
    for path in ("/api/notifications", "/api/notifications/unread"):
        assert (await client.get(path)).status_code == 401
    assert (await client.post("/api/notifications/read", json={})).status_code in (401, 403)

    # The replay rebuilds the same items, grouping and read state.
    before = [await page(client, h, limit=50) for h in (ann_h, bob_h, cat_h)]
    await asyncio.to_thread(replay_notifications)
    assert [await page(client, h, limit=50) for h in (ann_h, bob_h, cat_h)] == before
    assert await unread(client, ann_h) == 0


@replays_redis
@pytest.mark.usefixtures("pipeline")
async def test_likes_reposts_and_quotes_through_the_api_and_a_replay_rebuilds_them(
    client: httpx.AsyncClient, ctx: Context
) -> None:
    ann, bob, cat = unique_handle("ann"), unique_handle("bob"), unique_handle("cat")
    ann_h, bob_h, cat_h = [await login(client, h) for h in (ann, bob, cat)]
    registered = "SELECT count(*) FROM users WHERE lower(handle) = ANY($1::text[])"
    await eventually(lambda: ctx.pg.fetchval(registered, [ann, bob, cat]), until=lambda n: n == 3, timeout=60)
    wait = {"Prefer": "wait=5"}
    post_id = (await client.post("/api/posts", json={"body": "like me"}, headers={**ann_h, **wait})).json()["id"]
    for headers in (bob_h, cat_h, ann_h):  # ann's own like tells nobody
        assert (await client.post(f"/api/posts/{post_id}/like", headers=headers)).status_code == 202
    assert (await client.post(f"/api/posts/{post_id}/repost", headers=bob_h)).status_code == 202
    quote = await client.post("/api/posts", json={"body": "look", "quote_of": post_id}, headers={**cat_h, **wait})

    def kinds(p: dict) -> list[tuple[str, int, list[str]]]:
        return [(i["type"], i["count"], [a["handle"] for a in i["actors"]]) for i in p["items"]]

    want = [("quote", 1, [cat]), ("repost", 1, [bob]), ("like", 2, [cat, bob])]
    found = await eventually(lambda: page(client, ann_h), until=lambda p: kinds(p) == want, timeout=60)
    assert found["items"][0]["post"]["id"] == quote.json()["id"]
    assert {i["post"]["id"] for i in found["items"][1:]} == {post_id}
    assert await unread(client, ann_h) == 3
    # An unlike takes its actor away; the item stays for the other.
    assert (await client.delete(f"/api/posts/{post_id}/like", headers=cat_h)).status_code == 202
    want[2] = ("like", 1, [bob])
    await eventually(lambda: page(client, ann_h), until=lambda p: kinds(p) == want, timeout=60)

    before = await page(client, ann_h, limit=50)
    await asyncio.to_thread(replay_notifications)
    assert await page(client, ann_h, limit=50) == before
    assert await unread(client, ann_h) == 3


@replays_redis
@pytest.mark.usefixtures("pipeline")
async def test_likes_a_read_mark_and_more_likes_replay_to_the_same_items(
    client: httpx.AsyncClient, ctx: Context
) -> None:
    handles = [unique_handle(h) for h in ("ann", "bob", "cat", "dan", "eve")]
    ann_h, *fans = [await login(client, h) for h in handles]
    registered = "SELECT count(*) FROM users WHERE lower(handle) = ANY($1::text[])"
    await eventually(lambda: ctx.pg.fetchval(registered, handles), until=lambda n: n == 5, timeout=60)
    wait = {"Prefer": "wait=5"}
    post_id = (await client.post("/api/posts", json={"body": "like me"}, headers={**ann_h, **wait})).json()["id"]

    def likes(p: dict) -> list[tuple[int, list[str], bool]]:
        return [(i["count"], [a["handle"] for a in i["actors"]], i["read"]) for i in p["items"] if i["type"] == "like"]

    for headers in fans[:2]:
        assert (await client.post(f"/api/posts/{post_id}/like", headers=headers)).status_code == 202
    first = [(2, [handles[2], handles[1]], False)]
    await eventually(lambda: page(client, ann_h), until=lambda p: likes(p) == first, timeout=60)
    assert (await client.post("/api/notifications/read", json={}, headers=ann_h)).status_code == 204
    assert await unread(client, ann_h) == 0, "the reader sees their own read mark at once"
    for headers in fans[2:]:
        assert (await client.post(f"/api/posts/{post_id}/like", headers=headers)).status_code == 202
    want = [(2, [handles[4], handles[3]], False), (2, [handles[2], handles[1]], True)]
    before = await eventually(lambda: page(client, ann_h, limit=50), until=lambda p: likes(p) == want, timeout=60)
    assert await unread(client, ann_h) == 1

    await asyncio.to_thread(replay_notifications)
    assert await page(client, ann_h, limit=50) == before, "the same ids, counts, actors and read state"
    assert await unread(client, ann_h) == 1


async def test_a_page_reads_its_items_in_the_round_trip_that_checks_the_viewer(
    app: object, client: httpx.AsyncClient, redis_client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = await login(client, unique_handle("n-rt"))
    token = headers["Authorization"].removeprefix("Bearer ")
    reader = str(jwt.decode(token, options={"verify_signature": False})["sub"])
    now = int(datetime.now(UTC).timestamp() * 1000)
    for i in range(3):
        await redis_client.hset(model.item_key(reader, f"follow-{i}"), mapping={"type": "follow", "post": ""})
        await redis_client.zadd(model.actors_key(reader, f"follow-{i}"), {f"u-actor-{i}": now + i})
        await redis_client.zadd(model.items_key(reader), {f"follow-{i}": now + i})
    assert (await client.get("/api/notifications?limit=2", headers=headers)).status_code == 200  # scripts loaded
    taken = count_redis_round_trips(app.state.chirp, monkeypatch)  # type: ignore[attr-defined]
    page = await client.get("/api/notifications?limit=2", headers=headers)
    assert page.status_code == 200, page.text
    assert [item["id"] for item in page.json()["items"]] == ["follow-2", "follow-1"]
    assert len(taken) == 2, "the viewer's check and the page's items, then the items' details"
    rest = await client.get("/api/notifications", params={"cursor": page.json()["next_cursor"]}, headers=headers)
    assert [item["id"] for item in rest.json()["items"]] == ["follow-0"] and rest.json()["next_cursor"] is None
    assert (await client.get("/api/notifications", params={"cursor": forge(["x", 1])})).status_code == 401
