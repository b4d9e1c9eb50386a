"""The mentions consumer and `GET /api/notifications`: end to end through the pipeline, and replays of its events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from chirp.settings import Settings
from consumers import mentions
from consumers.runtime import Context
from schemas.events import PostDeleted, PostDeletedData, PostParsed, PostParsedData, new_id
from tests.conftest import eventually
from tests.integration.helpers import login, unique_handle


@pytest.fixture
async def ctx(settings: Settings) -> AsyncIterator[Context]:
    pg = await asyncpg.create_pool(settings.postgres_dsn(), min_size=1, max_size=2)
    redis_client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    yield Context(settings=settings, pg=pg, redis=redis_client, publisher=None)  # type: ignore[arg-type]
    await redis_client.aclose()
    await pg.close()


async def user(ctx: Context, handle: str) -> str:
    """A row in the users read model (as the users consumer writes it)."""
    user_id = f"u-{new_id()}"
    now = datetime.now(UTC)
    await ctx.pg.execute(
        "INSERT INTO users (user_id, handle, joined_at, profile_at) VALUES ($1, $2, $3, $3)", user_id, handle, now
    )
    return user_id


def parsed(author_id: str, *handles: str, created_at: datetime | None = None) -> PostParsed:
    data = PostParsedData(
        post_id=new_id(),
        author_id=author_id,
        body="hi",
        html="<p>hi</p>",
        text=f"hi {' '.join('@' + h for h in handles)}",
        mentions=tuple(h.lower() for h in handles),
        created_at=created_at or datetime.now(UTC),
    )
    return PostParsed(payload=data)


async def inbox(ctx: Context, user_id: str) -> list[tuple[str, float]]:
    return await ctx.redis.zrevrange(mentions.user_key(user_id), 0, -1, withscores=True)


async def test_the_same_events_twice_leave_the_model_as_once(ctx: Context) -> None:
    ann, bob = unique_handle("Ann"), unique_handle("bob")
    ann_id, bob_id = await user(ctx, ann), await user(ctx, bob)
    post = parsed("author-x", ann.upper(), bob, "nobody-" + new_id()[-8:].lower())
    await mentions.on_post_parsed([post], ctx)
    once = (
        await inbox(ctx, ann_id),
        await inbox(ctx, bob_id),
        await ctx.redis.hgetall(mentions.post_key(post.payload.post_id)),
    )
    await mentions.on_post_parsed([post, post], ctx)
    twice = (
        await inbox(ctx, ann_id),
        await inbox(ctx, bob_id),
        await ctx.redis.hgetall(mentions.post_key(post.payload.post_id)),
    )
    assert once == twice
    assert [m for m, _ in once[0]] == [post.payload.post_id], "handles resolve case-insensitively"
    assert sorted(once[2]["users"].split(",")) == sorted([ann_id, bob_id]), "unknown handles are skipped"


async def test_a_delete_removes_the_notification_and_a_late_parse_does_not_bring_it_back(ctx: Context) -> None:
    cy = unique_handle("cy")
    cy_id = await user(ctx, cy)
    post = parsed("author-y", cy)
    deleted = PostDeleted(payload=PostDeletedData(post_id=post.payload.post_id, author_id="author-y"))
    await mentions.on_post_parsed([post], ctx)
    assert len(await inbox(ctx, cy_id)) == 1
    await mentions.on_post_deleted([deleted, deleted], ctx)
    assert await inbox(ctx, cy_id) == []
    await mentions.on_post_parsed([post], ctx)  # redelivered after the delete
    assert await inbox(ctx, cy_id) == []
    assert await ctx.redis.exists(mentions.post_key(post.payload.post_id)) == 0


async def test_self_mentions_notify_nobody(ctx: Context) -> None:
    me = unique_handle("me")
    me_id = await user(ctx, me)
    await mentions.on_post_parsed([parsed(me_id, me)], ctx)
    assert await inbox(ctx, me_id) == []


@pytest.mark.usefixtures("pipeline")
async def test_a_post_mentioning_a_user_shows_in_their_notifications(client: httpx.AsyncClient, ctx: Context) -> None:
    author, reader = unique_handle("author"), unique_handle("reader")
    author_headers = await login(client, author)
    reader_headers = await login(client, reader)
    registered = "SELECT count(*) FROM users WHERE lower(handle) = ANY($1::text[])"
    await eventually(lambda: ctx.pg.fetchval(registered, [author, reader]), until=lambda n: n == 2, timeout=60)
    for i in range(3):
        body = {"body": f"Hello @{reader.upper()} number {i}"}
        assert (await client.post("/api/posts", json=body, headers=author_headers)).status_code == 202

    async def page() -> dict:
        return (await client.get("/api/notifications", headers=reader_headers, params={"limit": 2})).json()

    first = await eventually(page, until=lambda p: len(p["items"]) == 2 and p["next_cursor"], timeout=60)
    assert all(item["author"]["handle"] == author for item in first["items"])
    assert first["items"][0]["at"] >= first["items"][1]["at"]
    assert "number 2" in first["items"][0]["text"]
    rest = await client.get("/api/notifications", headers=reader_headers, params={"cursor": first["next_cursor"]})
    assert [i["text"][-8:] for i in rest.json()["items"]] == ["number 0"] and rest.json()["next_cursor"] is None
    assert (await client.get("/api/notifications")).status_code == 401
    bad = await client.get("/api/notifications", headers=reader_headers, params={"cursor": "bm90LWEtY3Vyc29y"})
    assert bad.status_code == 422
