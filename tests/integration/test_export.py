"""`GET /api/me/export`: the viewer's data from the read models, streamed with bounded memory."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import orjson
import pytest
from starlette.applications import Starlette

from schemas.events import new_id
from tests.integration.helpers import login, unique_handle
from tests.integration.test_gateway_server import Gateway, start_gateway

POSTS = 10_000
MiB = 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    yield from start_gateway(tmp_path_factory.mktemp("gw-export"), {})


async def add_posts(pg: asyncpg.Pool, author_id: str, count: int) -> list[str]:
    """`count` posts of ~1 KiB each in the posts read model, as the posts consumer would have projected them."""
    ids = [new_id() for _ in range(count)]
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    body = "A post of some length, to give the export something to carry. " * 16
    await pg.executemany(
        "INSERT INTO posts (post_id, author_id, body, html, text, created_at) VALUES ($1, $2, $3, $3, $3, $4)",
        [(pid, author_id, f"{i} {body}", t0 + timedelta(seconds=i)) for i, pid in enumerate(ids)],
    )
    return ids


async def test_an_export_of_ten_thousand_posts_streams_with_rss_growing_under_20_mb(
    server: Gateway, pg: asyncpg.Pool
) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
        headers = await login(http, unique_handle("export"))
        user_id = (await http.get("/api/me", headers=headers)).json()["user_id"]
        assert (await http.get("/api/me/export", headers=headers)).status_code == 200  # warm: code paths loaded
        ids = await add_posts(pg, user_id, POSTS)
        before = server.rss_kib()
        peak, size, chunks = before, 0, []
        async with http.stream("GET", "/api/me/export", headers=headers) as response:
            assert response.status_code == 200
            assert response.headers["content-disposition"].startswith("attachment;")
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                chunks.append(chunk)
                peak = max(peak, server.rss_kib())
    document = orjson.loads(b"".join(chunks))
    assert [p["post_id"] for p in document["posts"]] == ids
    assert document["posts"][0]["markdown"].startswith("0 A post")
    assert set(document) >= {"profile", "posts", "likes", "reposts", "bookmarks", "following", "followers"}
    assert size > POSTS * 1000
    grown = peak - before
    print(f"export of {POSTS} posts: {size / 2**20:.1f} MiB, gateway RSS +{grown} KiB")
    assert grown < 20 * MiB, f"RSS grew by {grown} KiB"


async def test_the_export_needs_a_login(client: httpx.AsyncClient, app: Starlette) -> None:
    assert (await client.get("/api/me/export")).status_code == 401


async def test_the_export_holds_likes_reposts_bookmarks_and_follows_both_ways(
    client: httpx.AsyncClient, pg: asyncpg.Pool
) -> None:
    handle = unique_handle("exp")
    me = await login(client, handle)
    user_id = (await client.get("/api/me", headers=me)).json()["user_id"]
    await pg.execute(
        "INSERT INTO interactions (post_id, kind, user_id, active, changed_at) VALUES ($1, 'like', $2, true, now())",
        "p-liked",
        user_id,
    )
    for kind in ("repost", "bookmark"):
        await pg.execute(
            "INSERT INTO interactions (post_id, kind, user_id, active, changed_at) VALUES ($1, $2, $3, true, now())",
            f"p-{kind}",
            kind,
            user_id,
        )
    await pg.execute(
        "INSERT INTO follows (follower_id, followee_id, active, changed_at) VALUES ($1, 'someone', true, now())",
        user_id,
    )
    await pg.execute(
        "INSERT INTO follows (follower_id, followee_id, active, changed_at) VALUES ('a-fan', $1, true, now())",
        user_id,
    )
    document = (await client.get("/api/me/export", headers=me)).json()
    assert [x["post_id"] for x in document["likes"]] == ["p-liked"]
    assert [x["post_id"] for x in document["reposts"]] == ["p-repost"]
    assert [x["post_id"] for x in document["bookmarks"]] == ["p-bookmark"]
    assert [x["user_id"] for x in document["followers"]] == ["a-fan"]
    assert [x["user_id"] for x in document["following"]] == ["someone"]
    assert document["profile"]["user_id"] == user_id


async def test_the_export_says_which_post_each_post_quotes(client: httpx.AsyncClient, pg: asyncpg.Pool) -> None:
    me = await login(client, unique_handle("expq"))
    user_id = (await client.get("/api/me", headers=me)).json()["user_id"]
    plain, quoting = await add_posts(pg, user_id, 2)
    await pg.execute(
        "INSERT INTO quotes (post_id, quote_of, active, created_at) VALUES ($1, 'p-quoted', true, now())", quoting
    )
    document = (await client.get("/api/me/export", headers=me)).json()
    assert {p["post_id"]: p["quote_of"] for p in document["posts"]} == {plain: None, quoting: "p-quoted"}
