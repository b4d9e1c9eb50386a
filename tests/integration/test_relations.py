"""Mutes and blocks: the relations consumer's rules on its handlers (real Redis), then end to end through the API
with every consumer running: the writes, the 403s, follows removed both ways, every read path's filter (home
timeline, profile lists, replies, thread, search, notifications), and a replay that rebuilds the model.
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
import pytest
import redis.asyncio as aioredis

from chirp.settings import Settings
from consumers import notifications
from consumers import relations as model
from consumers.runtime import Context
from schemas.events import RelationData, UserBlock, UserMute, new_id
from store.notifications import items_key
from store.relations import PREFIX, RedisRelations, hidden_key
from tests.conftest import eventually, replays_redis
from tests.integration.helpers import login, unique_handle

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def ctx(settings: Settings, pg: asyncpg.Pool, redis_client: aioredis.Redis) -> Context:
    return Context(settings=settings, pg=pg, redis=redis_client, publisher=None)  # type: ignore[arg-type]


def mute(user: str, target: str, seconds: int, *, undo: bool = False) -> UserMute:
    data = RelationData(user_id=user, target_id=target)
    return UserMute(
        type="user-unmuted" if undo else "user-muted", occurred_at=T0 + timedelta(seconds=seconds), payload=data
    )


def block(user: str, target: str, seconds: int, *, undo: bool = False) -> UserBlock:
    data = RelationData(user_id=user, target_id=target)
    return UserBlock(
        type="user-unblocked" if undo else "user-blocked", occurred_at=T0 + timedelta(seconds=seconds), payload=data
    )


async def model_state(redis: aioredis.Redis, *users: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for user in users:
        relations = RedisRelations(redis)
        found[user] = (
            sorted(await relations.hidden(user)),
            (await relations.page("mute", user, None, 100)).user_ids,
            (await relations.page("block", user, None, 100)).user_ids,
        )
    return found


async def test_duplicates_and_any_order_leave_the_same_state(ctx: Context) -> None:
    ann, bob, cy = (f"r-{new_id()}" for _ in range(3))
    # ann mutes bob and unmutes him (not muted); ann mutes cy; bob blocks ann, unblocks, blocks again (blocked).
    mutes = [mute(ann, bob, 1), mute(ann, bob, 2, undo=True), mute(ann, cy, 3)]
    blocks = [block(bob, ann, 1), block(bob, ann, 4, undo=True), block(bob, ann, 5)]
    states = []
    for seed in range(5):
        for user in (ann, bob, cy):
            await ctx.redis.delete(*(f"{PREFIX}{part}:{user}" for part in ("pairs", "mute", "block", "hidden")))
        m = random.Random(seed).sample(mutes, len(mutes))
        b = random.Random(seed + 100).sample(blocks, len(blocks))
        for a, c in zip(m, b, strict=True):  # interleaved, each twice
            await model.on_mutes([a, a], ctx)
            await model.on_blocks([c, c], ctx)
        states.append(await model_state(ctx.redis, ann, bob, cy))
    assert all(state == states[0] for state in states)
    assert states[0][ann] == (sorted([bob, cy]), [cy], []), "ann does not see cy (muted) nor bob (blocks her)"
    assert states[0][bob] == ([ann], [], [ann])
    assert states[0][cy] == ([], [], [])


async def test_a_mute_and_a_block_of_one_person_undo_independently(ctx: Context) -> None:
    ann, bob = f"r-{new_id()}", f"r-{new_id()}"
    await model.on_mutes([mute(ann, bob, 1)], ctx)
    await model.on_blocks([block(ann, bob, 2)], ctx)
    assert await ctx.redis.smembers(hidden_key(ann)) == {bob} and await ctx.redis.smembers(hidden_key(bob)) == {ann}
    await model.on_blocks([block(ann, bob, 3, undo=True)], ctx)
    assert await ctx.redis.smembers(hidden_key(ann)) == {bob}, "still muted"
    assert await ctx.redis.smembers(hidden_key(bob)) == set(), "a mute is private: bob sees ann again"
    await model.on_mutes([mute(ann, bob, 4, undo=True)], ctx)
    assert await ctx.redis.smembers(hidden_key(ann)) == set()


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


def ids_in(body: Any) -> set[str]:
    """Every post id in a response body (pages, threads, notifications, reposts), however deep."""
    found: set[str] = set()
    if isinstance(body, dict):
        if isinstance(body.get("id"), str) and ("html" in body or "deleted" in body):
            found.add(body["id"])
        for value in body.values():
            found |= ids_in(value)
    elif isinstance(body, list):
        for value in body:
            found |= ids_in(value)
    return found


async def shown(client: httpx.AsyncClient, url: str, headers: dict[str, str] | None) -> set[str]:
    response = await client.get(url, headers=headers)
    assert response.status_code == 200, response.text
    return ids_in(response.json())


async def until_shown(client: httpx.AsyncClient, url: str, headers: dict[str, str] | None, *posts: str) -> None:
    await eventually(lambda: shown(client, url, headers), until=lambda ids: set(posts) <= ids, timeout=60)


async def until_listed(client: httpx.AsyncClient, kind: str, headers: dict[str, str], handle: str) -> None:
    """Wait until the relations consumer shows `handle` in the viewer's mutes / blocks."""

    async def handles() -> list[str]:
        return [u["handle"] for u in (await client.get(f"/api/me/{kind}", headers=headers)).json()["items"]]

    await eventually(handles, until=lambda found: handle in found, timeout=60)


pipelined = pytest.mark.usefixtures("pipeline")


@pipelined
async def test_mute_and_block_writes_and_lists(client: httpx.AsyncClient) -> None:
    me, headers = await user(client, "rw")
    others = [await user(client, f"rw{i}") for i in range(3)]
    for kind in ("mute", "block"):
        for handle, _ in others:
            for _ in range(2):  # twice: still one
                response = await client.post(f"/api/users/{handle}/{kind}", headers=headers)
                assert response.status_code == 202 and response.json() == {"status": "accepted"}
        await until_listed(client, f"{kind}s", headers, others[0][0])
        await until_listed(client, f"{kind}s", headers, others[2][0])
        first = (await client.get(f"/api/me/{kind}s?limit=2", headers=headers)).json()
        assert [u["handle"] for u in first["items"]] == [others[2][0], others[1][0]], "newest first"
        assert set(first["items"][0]) == {"handle", "display_name", "avatar_url"}
        rest = (await client.get(f"/api/me/{kind}s?limit=2&cursor={first['next_cursor']}", headers=headers)).json()
        assert [u["handle"] for u in rest["items"]] == [others[0][0]] and rest["next_cursor"] is None
        profile = (await client.get(f"/api/users/{others[0][0]}", headers=headers)).json()
        assert profile[f"{kind}ed_by_me" if kind == "block" else "muted_by_me"] is True
        for _ in range(2):  # undoing twice, or what was never done, is a no-op 202
            assert (await client.delete(f"/api/users/{others[1][0]}/{kind}", headers=headers)).status_code == 202

        async def listed(kind: str = kind) -> list[str]:
            return [u["handle"] for u in (await client.get(f"/api/me/{kind}s", headers=headers)).json()["items"]]

        await eventually(listed, until=lambda found: found == [others[2][0], others[0][0]], timeout=60)

        for method in ("POST", "DELETE"):
            unknown = await client.request(method, f"/api/users/{unique_handle('nobody')}/{kind}", headers=headers)
            assert unknown.status_code == 404
            itself = await client.request(method, f"/api/users/{me}/{kind}", headers=headers)
            assert itself.status_code == 422 and itself.json()["error"]["field"] == "handle"
            assert (await client.request(method, f"/api/users/{others[0][0]}/{kind}")).status_code == 401
        assert (await client.get(f"/api/me/{kind}s")).status_code == 401
        assert (await client.get(f"/api/me/{kind}s?cursor=bad", headers=headers)).status_code == 422
    anonymous = (await client.get(f"/api/users/{others[0][0]}")).json()
    assert anonymous["muted_by_me"] is False and anonymous["blocked_by_me"] is False


@pipelined
async def test_a_mute_hides_the_muted_from_every_read_path_of_the_muter(
    client: httpx.AsyncClient, redis_client: aioredis.Redis, pg: asyncpg.Pool
) -> None:
    me, mine = await user(client, "rm")
    muted, theirs = await user(client, "rmm")
    friend, friends = await user(client, "rmf")
    _, strangers = await user(client, "rms")
    tag = f"mt{new_id()[-8:].lower()}"
    for handle in (muted, friend):
        assert (await client.post(f"/api/users/{handle}/follow", headers=mine)).status_code == 202
    root = await post(client, mine, f"my post #{tag}")
    theirs_post = await post(client, theirs, f"muted words #{tag}")
    reply = await post(client, theirs, f"a reply #{tag}", reply_to=root)
    control = await post(client, friends, f"a friend's reply #{tag}", reply_to=root)
    stranger_post = await post(client, strangers, "a post by someone I do not follow")
    assert (await client.post(f"/api/posts/{stranger_post}/repost", headers=theirs)).status_code == 202
    assert (await client.post(f"/api/posts/{theirs_post}/repost", headers=friends)).status_code == 202
    await post(client, theirs, f"hello @{me}")
    user_id = await pg.fetchval("SELECT user_id FROM users WHERE handle = $1", me)
    await eventually(lambda: redis_client.zcard(items_key(user_id)), until=lambda n: n >= 3, timeout=60)

    paths = {
        "/api/timeline": {theirs_post, stranger_post},  # the muted's post, and a post they reposted
        f"/api/users/{friend}/posts": {theirs_post},  # a repost of the muted's post
        f"/api/posts/{root}/replies": {reply},
        f"/api/posts/{root}/thread": {reply},
        f"/api/search?q={tag}": {theirs_post, reply},
        f"/api/tags/{tag}/posts": {theirs_post, reply},
        "/api/notifications": {reply},  # the reply (and the mention, below)
    }
    for url, hidden in paths.items():
        await until_shown(client, url, mine, *hidden)
    timeline = (await client.get("/api/timeline", headers=mine)).json()["items"]
    assert any(p["id"] == stranger_post and p.get("reposted_by", {}).get("handle") == muted for p in timeline)
    notes = (await client.get("/api/notifications", headers=mine)).json()["items"]
    assert {n["type"] for n in notes if n["actors"][0]["handle"] == muted} >= {"mention", "reply"}
    unread_before = (await client.get("/api/notifications/unread", headers=mine)).json()["count"]

    assert (await client.post(f"/api/users/{muted}/mute", headers=mine)).status_code == 202
    await until_listed(client, "mutes", mine, muted)
    for url, hidden in paths.items():
        assert not hidden & await shown(client, url, mine), url
    assert control in await shown(client, f"/api/posts/{root}/thread", mine), "others' replies stay"
    timeline = (await client.get("/api/timeline", headers=mine)).json()["items"]
    assert not [p for p in timeline if p.get("reposted_by", {}).get("handle") == muted]
    notes = (await client.get("/api/notifications", headers=mine)).json()["items"]
    assert not [n for n in notes if any(a["handle"] == muted for a in n["actors"])]
    unread_after = (await client.get("/api/notifications/unread", headers=mine)).json()["count"]
    assert unread_after == unread_before - 2, "the mention and the reply no longer count"
    # Visiting the muted's own profile still shows their posts; others (and they) still see everything.
    assert theirs_post in await shown(client, f"/api/users/{muted}/posts", mine)
    assert {theirs_post, reply} <= await shown(client, f"/api/search?q={tag}", friends)
    assert reply in await shown(client, f"/api/posts/{root}/thread", None)
    # The muted can still follow and see the muter.
    assert (await client.post(f"/api/users/{me}/follow", headers=theirs)).status_code == 202
    assert root in await shown(client, f"/api/users/{me}/posts", theirs)

    assert (await client.delete(f"/api/users/{muted}/mute", headers=mine)).status_code == 202
    await until_shown(client, "/api/timeline", mine, theirs_post)


async def counts(client: httpx.AsyncClient, handle: str) -> tuple[int, int]:
    profile = (await client.get(f"/api/users/{handle}")).json()
    return profile["followers_count"], profile["following_count"]


@pipelined
async def test_a_block_removes_follows_both_ways_and_refuses_the_blocked(client: httpx.AsyncClient) -> None:
    me, mine = await user(client, "rb")
    blocked, theirs = await user(client, "rbb")
    assert (await client.post(f"/api/users/{blocked}/follow", headers=mine)).status_code == 202
    assert (await client.post(f"/api/users/{me}/follow", headers=theirs)).status_code == 202
    await eventually(lambda: counts(client, me), until=lambda c: c == (1, 1), timeout=60)
    await eventually(lambda: counts(client, blocked), until=lambda c: c == (1, 1), timeout=60)
    root = await post(client, mine, "mine")
    quoted = await post(client, theirs, "quoting before the block", quote_of=root)

    assert (await client.post(f"/api/users/{blocked}/block", headers=mine)).status_code == 202
    await eventually(lambda: counts(client, me), until=lambda c: c == (0, 0), timeout=60)
    await eventually(lambda: counts(client, blocked), until=lambda c: c == (0, 0), timeout=60)
    for url in (f"/api/users/{me}/followers", f"/api/users/{me}/following"):
        assert (await client.get(url)).json()["items"] == []
    await until_listed(client, "blocks", mine, blocked)

    follow = await client.post(f"/api/users/{me}/follow", headers=theirs)
    assert follow.status_code == 403 and follow.json()["error"]["code"] == "forbidden"
    for extra in ({"reply_to": root}, {"quote_of": root}):
        response = await client.post("/api/posts", json={"body": "no", **extra}, headers=theirs)
        assert response.status_code == 403, response.text
    assert quoted  # what was written before stays written
    # Unfollowing is always allowed, and so is blocking back.
    assert (await client.delete(f"/api/users/{me}/follow", headers=theirs)).status_code == 202
    assert (await client.post(f"/api/users/{me}/block", headers=theirs)).status_code == 202
    await until_listed(client, "blocks", theirs, me)

    assert (await client.delete(f"/api/users/{blocked}/block", headers=mine)).status_code == 202
    await eventually(
        lambda: client.get(f"/api/users/{blocked}", headers=mine), until=lambda r: not r.json()["blocked_by_me"]
    )
    # blocked still blocks me: now I am the one refused
    assert (await client.post(f"/api/users/{blocked}/follow", headers=mine)).status_code == 403
    assert (await client.delete(f"/api/users/{me}/block", headers=theirs)).status_code == 202
    await eventually(
        lambda: client.post(f"/api/users/{blocked}/follow", headers=mine), until=lambda r: r.status_code == 202
    )
    response = await client.post("/api/posts", json={"body": "ok", "reply_to": root}, headers=theirs)
    assert response.status_code == 202


@pipelined
async def test_a_block_hides_each_side_from_the_other(
    client: httpx.AsyncClient, redis_client: aioredis.Redis, pg: asyncpg.Pool
) -> None:
    me, mine = await user(client, "rh")
    blocked, theirs = await user(client, "rhb")
    bystander, others = await user(client, "rhx")
    tag = f"bt{new_id()[-8:].lower()}"
    for headers in (mine, theirs):  # both follow the bystander, who reposts each side's post
        assert (await client.post(f"/api/users/{bystander}/follow", headers=headers)).status_code == 202
    my_post = await post(client, mine, f"mine #{tag}")
    their_post = await post(client, theirs, f"theirs #{tag}")
    for reposted in (my_post, their_post):
        assert (await client.post(f"/api/posts/{reposted}/repost", headers=others)).status_code == 202
    their_reply = await post(client, theirs, f"their reply #{tag}", reply_to=my_post)
    my_reply = await post(client, mine, f"my reply #{tag}", reply_to=their_post)
    by_other = await post(client, others, f"a bystander's reply #{tag}", reply_to=my_post)
    user_id = await pg.fetchval("SELECT user_id FROM users WHERE handle = $1", me)
    await eventually(lambda: redis_client.zcard(items_key(user_id)), until=lambda n: n >= 2, timeout=60)

    mine_paths = {
        "/api/timeline": {their_post},  # reposted by the bystander
        f"/api/users/{blocked}/posts": {their_post},
        f"/api/posts/{my_post}/replies": {their_reply},
        f"/api/posts/{my_post}/thread": {their_reply},
        f"/api/search?q={tag}": {their_post, their_reply},
        "/api/notifications": {their_reply},
    }
    theirs_paths = {
        "/api/timeline": {my_post},
        f"/api/users/{me}/posts": {my_post},
        f"/api/posts/{their_post}/replies": {my_reply},
        f"/api/posts/{their_post}/thread": {my_reply},
        f"/api/search?q={tag}": {my_post, my_reply},
        "/api/notifications": {my_reply},
    }
    for paths, headers in ((mine_paths, mine), (theirs_paths, theirs)):
        for url, hidden in paths.items():
            await until_shown(client, url, headers, *hidden)

    assert (await client.post(f"/api/users/{blocked}/block", headers=mine)).status_code == 202
    await until_listed(client, "blocks", mine, blocked)
    # A mention by the blocked, after the block: in the notifications model, but it notifies nothing.
    await post(client, theirs, f"hey @{me}")
    await eventually(lambda: redis_client.zcard(items_key(user_id)), until=lambda n: n >= 3, timeout=60)
    for paths, headers in ((mine_paths, mine), (theirs_paths, theirs)):
        for url, hidden in paths.items():
            assert not hidden & await shown(client, url, headers), url
    notes = (await client.get("/api/notifications", headers=mine)).json()["items"]
    assert not [n for n in notes if any(a["handle"] == blocked for a in n["actors"])]
    assert (await client.get("/api/notifications/unread", headers=mine)).json()["count"] == len(
        [n for n in notes if not n["read"]]
    )
    assert by_other in await shown(client, f"/api/posts/{my_post}/thread", mine)
    # Logged out, everything shows.
    assert {my_post, their_post, their_reply, my_reply} <= await shown(client, f"/api/search?q={tag}", None)


@replays_redis
@pipelined
async def test_a_replay_rebuilds_mutes_and_blocks(client: httpx.AsyncClient, redis_client: aioredis.Redis) -> None:
    me, mine = await user(client, "rr")
    others = [await user(client, f"rr{i}") for i in range(3)]
    await client.post(f"/api/users/{others[0][0]}/mute", headers=mine)
    await client.post(f"/api/users/{others[1][0]}/mute", headers=mine)
    await client.delete(f"/api/users/{others[1][0]}/mute", headers=mine)
    await client.post(f"/api/users/{others[2][0]}/block", headers=mine)
    await client.post(f"/api/users/{me}/block", headers=others[0][1])
    await until_listed(client, "blocks", mine, others[2][0])
    await until_listed(client, "blocks", others[0][1], me)
    await eventually(lambda: client.get("/api/me/mutes", headers=mine), until=lambda r: len(r.json()["items"]) == 1)
    views = [("mutes", mine), ("blocks", mine), ("blocks", others[0][1]), ("blocks", others[2][1])]
    before = [(await client.get(f"/api/me/{kind}", headers=h)).json() for kind, h in views]
    profile_before = (await client.get(f"/api/users/{others[0][0]}", headers=mine)).json()
    assert profile_before["muted_by_me"] and not profile_before["blocked_by_me"]
    follow = await client.post(f"/api/users/{others[2][0]}/follow", headers=mine)
    assert follow.status_code == 202, "the blocker is not refused"

    await redis_client.delete(*[k async for k in redis_client.scan_iter(match=f"{PREFIX}*")])
    assert (await client.get("/api/me/mutes", headers=mine)).json()["items"] == []
    replay = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ops", "replay", "relations", env={**os.environ}, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(replay.communicate(), timeout=300)
    assert replay.returncode == 0, stderr.decode()[-2000:]
    after = [(await client.get(f"/api/me/{kind}", headers=h)).json() for kind, h in views]
    assert after == before
    assert [u["handle"] for u in after[0]["items"]] == [others[0][0]]
    assert (await client.get(f"/api/users/{others[0][0]}", headers=mine)).json() == profile_before
    assert (await client.post(f"/api/users/{others[0][0]}/follow", headers=mine)).status_code == 403


@pipelined
async def test_a_grouped_notification_shows_and_counts_only_the_actors_its_reader_sees(
    client: httpx.AsyncClient, ctx: Context
) -> None:
    me, mine = await user(client, "rg")
    fans = [await user(client, f"rg{i}") for i in range(4)]
    root = await post(client, mine, "liked by many")
    by_handle = "SELECT handle, user_id FROM users WHERE handle = ANY($1::text[])"
    ids = dict(await ctx.pg.fetch(by_handle, [me, *(h for h, _ in fans)]))
    now = notifications.ms(datetime.now(UTC))
    likes = [notifications.Note(ids[me], "like", ids[h], now + i, new_id(), root) for i, (h, _) in enumerate(fans)]
    await notifications._add(ctx, likes)  # one grouped item, as the consumer makes for likes
    item = (await client.get("/api/notifications", headers=mine)).json()["items"][0]
    assert item["type"] == "like" and item["count"] == 4

    await client.post(f"/api/users/{fans[3][0]}/mute", headers=mine)  # the latest actor
    await client.post(f"/api/users/{fans[1][0]}/block", headers=mine)
    await client.post(f"/api/users/{me}/block", headers=fans[0][1])
    await eventually(lambda: ctx.redis.scard(hidden_key(ids[me])), until=lambda n: n == 3, timeout=60)
    item = (await client.get("/api/notifications", headers=mine)).json()["items"][0]
    assert [a["handle"] for a in item["actors"]] == [fans[2][0]] and item["count"] == 1
