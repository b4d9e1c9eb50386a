"""Editing a post: `PATCH /api/posts/{id}`, its history, and every read path following the newest version (the
posts, search, timelines, notifications and trending models), whatever order the renders arrive in, and replays."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from chirp.settings import Settings
from consumers import trending
from consumers.runtime import Context
from producers.broker import Publisher
from schemas.events import PostParsed, new_id
from store.posts import PostgresPosts
from store.trending import RedisTrending
from tests.conftest import eventually
from tests.integration.explore_support import ago, deleted, drop, parsed
from tests.integration.helpers import login, unique_handle
from tests.integration.test_search import word

WAIT = {"Prefer": "wait=5"}


def edit_of(event: PostParsed, text: str, *, after: timedelta, tags: tuple[str, ...] = ()) -> PostParsed:
    """The render of an edit of `event`'s post made `after` its creation (as preparse publishes it)."""
    at = event.payload.created_at + after
    change = {"body": text, "html": f"<p>{text}</p>", "text": text, "hashtags": tags, "edited_at": at}
    data = event.payload.model_copy(update=change)
    return PostParsed(occurred_at=at, payload=data)


async def get(client: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None, **params: Any) -> Any:
    response = await client.get(url, headers=headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def ids(client: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None, **params: Any) -> list[str]:
    return [item["id"] for item in (await get(client, url, headers, **params))["items"]]


async def mentions_of(client: httpx.AsyncClient, headers: dict[str, str], post_id: str) -> int:
    items = (await get(client, "/api/notifications", headers, limit=50))["items"]
    return sum(1 for i in items if i["type"] == "mention" and i.get("post", {}).get("id") == post_id)


@pytest.mark.usefixtures("pipeline")
async def test_an_edit_shows_everywhere_keeps_its_history_and_notifies_new_mentions_only(
    client: httpx.AsyncClient, pg: asyncpg.Pool
) -> None:
    ann, bob, cat = unique_handle("ann"), unique_handle("bob"), unique_handle("cat")
    ann_h, bob_h, cat_h = [await login(client, h) for h in (ann, bob, cat)]
    registered = "SELECT count(*) FROM users WHERE lower(handle) = ANY($1::text[])"
    await eventually(lambda: pg.fetchval(registered, [ann, bob, cat]), until=lambda n: n == 3, timeout=60)
    assert (await client.post(f"/api/users/{ann}/follow", headers=bob_h)).status_code == 202
    old_word, new_word, old_tag, new_tag = word(), word(), word(), word()

    created = await client.post(
        "/api/posts", json={"body": f"first {old_word} #{old_tag} @{bob}"}, headers={**ann_h, **WAIT}
    )
    post_id = created.json()["id"]
    await eventually(lambda: mentions_of(client, bob_h, post_id), until=lambda n: n == 1, timeout=60)
    await eventually(lambda: ids(client, "/api/search", q=old_word), until=lambda found: found == [post_id])
    first = await get(client, f"/api/posts/{post_id}")
    assert "edited_at" not in first

    # Refused: another user, an unknown post, a bad body (as a new post's), no login.
    url = f"/api/posts/{post_id}"
    other = await client.patch(url, json={"body": "mine now"}, headers=bob_h)
    assert other.status_code == 403, other.text
    assert (await client.patch(f"/api/posts/{new_id()}", json={"body": "x"}, headers=ann_h)).status_code == 404
    for bad, field in (({"body": ""}, "body"), ({"body": "x" * 2001}, "body"), ({}, "body"), ({"body": 5}, "body")):
        refused = await client.patch(url, json=bad, headers=ann_h)
        assert refused.status_code == 422 and refused.json()["error"]["field"] == field, refused.text
    refused = await client.patch(url, json={"body": "x", "reply_to": post_id}, headers=ann_h)
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "reply_to"
    assert (await client.patch(url, json={"body": "x"})).status_code in (401, 403)

    edited = await client.patch(
        url, json={"body": f"second {new_word} #{new_tag} @{bob} @{cat}"}, headers={**ann_h, **WAIT}
    )
    assert edited.status_code == 202 and edited.json() == {"id": post_id, "status": "accepted"}
    assert edited.headers["preference-applied"] == "wait"
    post = await get(client, url)
    assert post["body"] == f"second {new_word} #{new_tag} @{bob} @{cat}" and post["hashtags"] == [new_tag]
    assert f'href="/tags/{new_tag}"' in post["html"] and post["edited_at"] > post["created_at"]
    assert post["created_at"] == first["created_at"]
    history = (await get(client, f"{url}/history"))["items"]
    assert [v["body"] for v in history] == [post["body"], first["body"]]
    assert [v["html"] for v in history] == [post["html"], first["html"]]
    assert history[0]["at"] == post["edited_at"] and history[1]["at"] == first["created_at"]

    # Lists, tag pages, search and the follower's timeline follow the newest version.
    assert post_id in await ids(client, f"/api/tags/{new_tag}/posts")
    assert post_id not in await ids(client, f"/api/tags/{old_tag}/posts")
    listed = (await get(client, f"/api/users/{ann}/posts"))["items"]
    assert [(p["body"], "edited_at" in p) for p in listed if p["id"] == post_id] == [(post["body"], True)]
    await eventually(lambda: ids(client, "/api/search", q=new_word), until=lambda found: found == [post_id])
    assert await ids(client, "/api/search", q=old_word) == []
    assert (await get(client, f"/api/tags/{new_tag}"))["posts_count"] == 1
    assert (await client.get(f"/api/tags/{old_tag}")).status_code == 404

    async def in_timeline() -> list[str]:
        return [p["body"] for p in (await get(client, "/api/timeline", bob_h))["items"] if p["id"] == post_id]

    await eventually(in_timeline, until=lambda bodies: bodies == [post["body"]], timeout=30)

    # A new mention notifies; the one already notified does not notify again.
    await eventually(lambda: mentions_of(client, cat_h, post_id), until=lambda n: n == 1, timeout=60)
    assert await mentions_of(client, bob_h, post_id) == 1

    # A deleted post has no history.
    assert (await client.delete(url, headers={**ann_h, **WAIT})).status_code == 202
    assert (await client.get(f"{url}/history")).status_code == 404


async def test_the_newest_version_wins_whatever_order_the_renders_arrive_in(pg: asyncpg.Pool) -> None:
    posts = PostgresPosts(pg)
    created = parsed(f"a-{new_id()}", "v0", at=ago(minutes=5))
    v1 = edit_of(created, "v1", after=timedelta(minutes=1))
    v2 = edit_of(created, "v2", after=timedelta(minutes=2))
    rerender_v1 = v1.model_copy(update={"occurred_at": v2.occurred_at + timedelta(minutes=1)})  # later, older version
    for batch in ([v2], [v1, rerender_v1], [created]):
        await posts.save_parsed(batch)
    shown = await posts.get(created.payload.post_id)
    assert shown is not None and (shown.body, shown.edited_at) == ("v2", v2.payload.edited_at)
    assert [v.body for v in await posts.history(created.payload.post_id)] == ["v2", "v1", "v0"]
    await posts.save_parsed([created, v1, v2, v1])  # one batch, in any order: the same
    assert (await posts.get(created.payload.post_id)).body == "v2"  # type: ignore[union-attr]


async def test_a_delete_drops_every_version_and_a_later_render_keeps_none(pg: asyncpg.Pool) -> None:
    posts = PostgresPosts(pg)
    created = parsed(f"a-{new_id()}", "v0", at=ago(minutes=5))
    post_id = created.payload.post_id
    versions = "SELECT count(*) FROM post_versions WHERE post_id = $1"
    await posts.save_parsed([created, edit_of(created, "v1", after=timedelta(minutes=1))])
    assert await pg.fetchval(versions, post_id) == 2
    assert await posts.save_deleted([deleted(created)]) == [post_id]
    assert await pg.fetchval(versions, post_id) == 0
    await posts.save_parsed([edit_of(created, "v2", after=timedelta(minutes=2))])  # a render after the delete
    assert await pg.fetchval(versions, post_id) == 0
    assert await posts.get(post_id) is None


@pytest.fixture
async def counts(settings: Settings, pg: asyncpg.Pool, redis_client: aioredis.Redis, publisher: Publisher) -> Any:
    prefix = f"test-trending:{{{new_id()}}}:"
    yield Context(settings, pg, redis_client, publisher, trending_prefix=prefix)
    await drop(redis_client, prefix)


async def contributions(ctx: Context, tag: str) -> set[str]:
    """The distinct authors counted for `tag`, in every bucket."""
    found: set[str] = set()
    async for key in ctx.redis.scan_iter(match=f"{ctx.trending_prefix}t:*:a:{tag}"):
        found |= set(await ctx.redis.smembers(key))
    return found


async def test_trending_counts_the_tags_of_the_newest_version_only(counts: Context) -> None:
    old, new, newer = word(), word(), word()
    posts = [parsed(f"a-{new_id()}", f"#{old}", tags=(old,), at=ago(seconds=30)) for _ in range(3)]
    authors = {p.payload.author_id for p in posts}
    await trending.on_post_parsed(posts, counts)
    assert await contributions(counts, old) == authors
    newest = [edit_of(p, f"#{newer}", after=timedelta(seconds=20), tags=(newer,)) for p in posts]
    older = [edit_of(p, f"#{new}", after=timedelta(seconds=10), tags=(new,)) for p in posts]
    await trending.on_post_parsed(newest, counts)
    await trending.on_post_parsed(older, counts)  # arrives late: changes nothing
    await trending.on_post_parsed(posts, counts)  # a redelivered first version: nothing either
    assert (await contributions(counts, old), await contributions(counts, new)) == (set(), set())
    assert await contributions(counts, newer) == authors
    await RedisTrending(counts.redis, counts.trending_prefix).refresh(counts.pg)


def replay(*names: str) -> None:
    """`chirp replay NAME...`, as an operator runs it (this run's topics and groups)."""
    cmd = [sys.executable, "-m", "ops", "replay", *names]
    done = subprocess.run(cmd, env={**os.environ}, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.usefixtures("pipeline")
async def test_a_replay_rebuilds_the_edited_posts_and_their_history(
    client: httpx.AsyncClient, pg: asyncpg.Pool
) -> None:
    ann = unique_handle("ann")
    ann_h = await login(client, ann)
    unique = word()
    created = await client.post("/api/posts", json={"body": f"one {unique}"}, headers={**ann_h, **WAIT})
    post_id = created.json()["id"]
    for body in (f"two {unique}", f"three {unique}"):
        edit = await client.patch(f"/api/posts/{post_id}", json={"body": body}, headers={**ann_h, **WAIT})
        assert edit.status_code == 202
    url = f"/api/posts/{post_id}"
    history = await eventually(lambda: get(client, f"{url}/history"), until=lambda h: len(h["items"]) == 3)
    newest = await eventually(  # the index gathers its batches: it may show an earlier version for a moment
        lambda: get(client, "/api/search", q=unique),
        until=lambda found: [p["body"] for p in found["items"]] == [f"three {unique}"],
    )
    before = (await get(client, url), history, newest)
    await pg.execute("DELETE FROM post_versions WHERE post_id = $1", post_id)  # damage: the replay brings it back
    await pg.execute("UPDATE search_posts SET text = '' WHERE post_id = $1", post_id)
    await asyncio.to_thread(replay, "posts", "search")
    after = (await get(client, url), await get(client, f"{url}/history"), await get(client, "/api/search", q=unique))
    assert after == before
    assert [v["body"] for v in after[1]["items"]] == [f"three {unique}", f"two {unique}", f"one {unique}"]
