"""Reposts in home timelines follow the timelines' hybrid rule: a small account's repost is fanned out into its
followers' Redis timelines, a big account's is merged at read time; either way a post shows once, at its newest
repost, also next to its author's own post. Seen through `GET /api/timeline`, page by page, and through a replay."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

import httpx
import pytest

from store.timelines import GLOBAL_BIG, big_key, held_key, timeline_key
from tests.conftest import eventually, replays_redis
from tests.integration.users_support import ctx, logged_in, post, wait_user

__all__ = ["ctx"]  # module fixture
pytestmark = pytest.mark.usefixtures("pipeline")
BIG = 10**6  # followers a big account is given in the users table: more than `fanout_max_followers`

Item = tuple[str, str | None]  # (post id, reposter's handle or None)


async def listing(client: httpx.AsyncClient, headers: dict[str, str], limit: int = 1) -> list[Item]:
    """The whole timeline, page by page (warm pages only: a cold one is served while the timeline is rebuilt)."""
    items: list[Item] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/api/timeline", params=params, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        if body["partial"]:
            return [("partial", None)]
        items += [(p["id"], (p.get("reposted_by") or {}).get("handle")) for p in body["items"]]
        if not (cursor := body["next_cursor"]):
            return items


async def shows(client: httpx.AsyncClient, headers: dict[str, str], expected: list[Item]) -> list[Item]:
    """Wait until the timeline, read a post per page, lists exactly `expected`."""
    return await eventually(lambda: listing(client, headers), until=lambda found: found == expected, timeout=60)


async def members(ctx: Any, user_id: str) -> list[str]:
    return await ctx.redis.zrange(timeline_key(user_id), 0, -1)


def reposts_in(values: list[str]) -> set[tuple[str, str]]:
    """(reposter, post) of the repost members of a timeline."""
    return {(v.split(":")[1], v.split(":")[2]) for v in values if v.count(":") == 3}


async def follows(client: httpx.AsyncClient, pg: Any, reader: tuple[str, str, dict[str, str]], *handles: str) -> None:
    for handle in handles:
        assert (await client.post(f"/api/users/{handle}/follow", headers=reader[2])).status_code == 202
    await wait_user(pg, reader[0], until=lambda r: r["following_count"] == len(handles), timeout=60)


async def repost(client: httpx.AsyncClient, headers: dict[str, str], post_id: str, *, undo: bool = False) -> None:
    method = client.delete if undo else client.post
    assert (await method(f"/api/posts/{post_id}/repost", headers=headers)).status_code == 202


async def made_big(pg: Any, user_id: str) -> None:
    await pg.execute("UPDATE users SET followers_count = followers_count + $2 WHERE user_id = $1", user_id, BIG)


async def test_a_small_accounts_repost_is_fanned_out_to_its_followers(client: httpx.AsyncClient, ctx, pg) -> None:
    reader = await logged_in(client, pg, "rr")
    small, small_handle, small_h = await logged_in(client, pg, "rs")
    _, _, stranger_h = await logged_in(client, pg, "rx")
    await follows(client, pg, reader, small_handle)
    for headers in (reader[2], small_h):
        await shows(client, headers, [])  # the timelines are built
    original = await post(client, stranger_h, "reposted by a small account")
    await repost(client, small_h, original)
    for headers in (reader[2], small_h):  # the reposter's own timeline shows it too
        await shows(client, headers, [(original, small_handle)])
    for user_id in (reader[0], small):
        assert reposts_in(await members(ctx, user_id)) == {(small, original)}, "fanned out into Redis"
        assert await ctx.redis.hexists(held_key(user_id), original)


async def test_a_big_accounts_repost_is_merged_at_read_time(client: httpx.AsyncClient, ctx, pg) -> None:
    reader = await logged_in(client, pg, "rb")
    big, big_handle, big_h = await logged_in(client, pg, "rc")
    _, _, stranger_h = await logged_in(client, pg, "rx")
    await follows(client, pg, reader, big_handle)
    await made_big(pg, big)
    try:
        await shows(client, reader[2], [])
        original = await post(client, stranger_h, "reposted by a big account")
        await repost(client, big_h, original)
        await shows(client, reader[2], [(original, big_handle)])
        assert not reposts_in(await members(ctx, reader[0])), "not fanned out"
        assert big in await ctx.redis.smembers(big_key(reader[0])), "the reader merges the big account"
        await repost(client, big_h, original, undo=True)
        await shows(client, reader[2], [])
    finally:
        await ctx.redis.srem(GLOBAL_BIG, big)


async def three_followed(client: httpx.AsyncClient, pg: Any, reader_prefix: str) -> tuple[Any, ...]:
    """A reader who follows an author, a small account and a big one: the reader, the author's headers, (handle,
    headers) of the small account and (id, handle, headers) of the big one."""
    reader = await logged_in(client, pg, reader_prefix)
    _author, author_handle, author_h = await logged_in(client, pg, "ra")
    _small, small_handle, small_h = await logged_in(client, pg, "rs")
    big, big_handle, big_h = await logged_in(client, pg, "rc")
    await follows(client, pg, reader, author_handle, small_handle, big_handle)
    await made_big(pg, big)
    return reader, author_h, (small_handle, small_h), (big, big_handle, big_h)


async def test_a_post_shows_once_at_its_newest_repost_whoever_holds_it(client: httpx.AsyncClient, ctx, pg) -> None:
    """The author's own post (fanned out), a small account's repost (fanned out) and a big account's (merged): one
    item, at the newest; an unrepost falls back to the next holder, and the last one to the post itself."""
    reader, author_h, (small_handle, small_h), (big, big_handle, big_h) = await three_followed(client, pg, "ro")
    try:
        await shows(client, reader[2], [])
        original = await post(client, author_h, "reposted twice")
        between = await post(client, author_h, "written between the two reposts")
        await repost(client, small_h, original)
        await shows(client, reader[2], [(original, small_handle), (between, None)])
        await repost(client, big_h, original)
        await shows(client, reader[2], [(original, big_handle), (between, None)])
        await repost(client, small_h, original)  # again: the small account's repost is the newest now
        await shows(client, reader[2], [(original, small_handle), (between, None)])
        for limit in (2, 20):
            assert await listing(client, reader[2], limit) == [(original, small_handle), (between, None)]
        await repost(client, small_h, original, undo=True)
        await shows(client, reader[2], [(original, big_handle), (between, None)])
        await repost(client, big_h, original, undo=True)
        await shows(client, reader[2], [(between, None), (original, None)])
    finally:
        await ctx.redis.srem(GLOBAL_BIG, big)


async def test_an_unrepost_leaves_the_post_where_another_followees_repost_holds_it(
    client: httpx.AsyncClient, ctx, pg
) -> None:
    reader = await logged_in(client, pg, "ru")
    first, first_handle, first_h = await logged_in(client, pg, "rf")
    _second, second_handle, second_h = await logged_in(client, pg, "rg")
    _, _, stranger_h = await logged_in(client, pg, "rx")
    await follows(client, pg, reader, first_handle, second_handle)
    await shows(client, reader[2], [])
    original = await post(client, stranger_h, "held by two reposts")
    mine = await post(client, first_h, "first's own post")
    await repost(client, first_h, original)
    await repost(client, second_h, original)
    await shows(client, reader[2], [(original, second_handle), (mine, None)])
    await repost(client, second_h, original, undo=True)
    await shows(client, reader[2], [(original, first_handle), (mine, None)])
    assert reposts_in(await members(ctx, reader[0])) == {(first, original)}
    await repost(client, first_h, original, undo=True)
    await shows(client, reader[2], [(mine, None)])
    assert not reposts_in(await members(ctx, reader[0]))
    assert not await ctx.redis.hexists(held_key(reader[0]), original)


async def test_a_deleted_posts_reposts_leave_the_timelines(client: httpx.AsyncClient, ctx, pg) -> None:
    reader = await logged_in(client, pg, "rd")
    small, small_handle, small_h = await logged_in(client, pg, "rs")
    _, _, author_h = await logged_in(client, pg, "rx")
    await follows(client, pg, reader, small_handle)
    await shows(client, reader[2], [])
    original = await post(client, author_h, "reposted, then deleted")
    kept = await post(client, small_h, "kept")
    await repost(client, small_h, original)
    await shows(client, reader[2], [(original, small_handle), (kept, None)])
    assert (small, original) in reposts_in(await members(ctx, reader[0]))
    assert (await client.delete(f"/api/posts/{original}", headers=author_h)).status_code == 202
    await shows(client, reader[2], [(kept, None)])
    assert (await client.get(f"/api/posts/{original}")).status_code == 404


def replay_timelines() -> None:
    """`chirp replay timelines`, as an operator runs it (this run's topics and groups)."""
    cmd = [sys.executable, "-m", "ops", "replay", "timelines"]
    done = subprocess.run(cmd, env={**os.environ}, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@replays_redis
async def test_a_replay_rebuilds_the_same_timeline_with_reposts(client: httpx.AsyncClient, ctx, pg) -> None:
    reader, author_h, (small_handle, small_h), (big, big_handle, big_h) = await three_followed(client, pg, "rp")
    try:
        await shows(client, reader[2], [])
        posts = [await post(client, author_h, f"post {i}") for i in range(4)]
        await repost(client, small_h, posts[0])
        await repost(client, big_h, posts[1])
        await repost(client, small_h, posts[1])
        await repost(client, big_h, posts[2])
        await repost(client, small_h, posts[3])
        await repost(client, small_h, posts[3], undo=True)
        expected = [(posts[2], big_handle), (posts[1], small_handle), (posts[0], small_handle)]
        expected += [(posts[3], None)]
        before = await shows(client, reader[2], expected)
        pages = [(await client.get("/api/timeline", params={"limit": 2}, headers=reader[2])).json()]
        await asyncio.to_thread(replay_timelines)
        assert not await ctx.redis.exists(timeline_key(reader[0])), "the replay leaves timelines to their next read"
        assert await shows(client, reader[2], before) == before
        again = (await client.get("/api/timeline", params={"limit": 2}, headers=reader[2])).json()
        assert again == pages[0], "the same items, times and cursor"
    finally:
        await ctx.redis.srem(GLOBAL_BIG, big)
