"""Leaving for good (docs/erasure.md): account deletion and post erasure reach the Kafka log itself.

After `DELETE /api/me` (or a post's delete) and the erasure delay, a raw read of every topic from offset 0 (plain
aiokafka, no Chirp code) finds none of the person's personal data in clear; a rebuild of every read model then has
no trace of them and dead-letters nothing; other people's data is unchanged.
"""

from __future__ import annotations

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis
from starlette.applications import Starlette

from chirp.settings import Settings
from gateway.auth.current import start_session
from gateway.state import State
from ops.erasure import status, verify
from schemas.events import UserProfileUpdated, UserProfileUpdatedData, UserRegistered, UserRegisteredData, new_id
from store.accounts import handle_digest
from store.relations import list_key
from tests.conftest import eventually
from tests.integration.erasure_support import dead_letters, raw_log, rebuild_all
from tests.integration.helpers import login, unique_handle

pytestmark = pytest.mark.usefixtures("pipeline")


@pytest.fixture
async def state(app: Starlette) -> State:
    return app.state.chirp  # type: ignore[no-any-return]


async def user_with_github(state: State) -> tuple[str, str, int, dict[str, str], str]:
    """A person registered with a GitHub id (published as the GitHub login does), logged in."""
    handle, github_id = unique_handle("gone"), int(new_id()[-9:], 36) % 10**12 + 10**11
    user_id = new_id()  # opaque, as new accounts get
    await state.publisher.publish(
        UserRegistered(
            actor=user_id,
            payload=UserRegisteredData(
                user_id=user_id,
                github_id=github_id,
                handle=handle,
                display_name=f"Name {handle}",
                avatar_url=f"https://avatars.example/{handle}.png",
            ),
        )
    )
    access, refresh, _ = await start_session(state, user_id, handle)
    return user_id, handle, github_id, {"Authorization": f"Bearer {access}"}, refresh


async def post(client: httpx.AsyncClient, headers: dict[str, str], body: str) -> str:
    response = await client.post("/api/posts", json={"body": body}, headers=headers)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def visible(pg: asyncpg.Pool, post_id: str) -> bool:
    return bool(await pg.fetchval("SELECT 1 FROM posts WHERE post_id = $1 AND deleted_at IS NULL", post_id))


async def followers(pg: asyncpg.Pool, user_id: str) -> int:
    found = await pg.fetchval("SELECT followers_count FROM users WHERE user_id = $1", user_id)
    return -1 if found is None else int(found)


async def traces(pg: asyncpg.Pool, user_id: str, secrets: list[str], *, tombstones: bool = False) -> list[str]:
    """Where the read models in PostgreSQL still mention the user or any of `secrets` (with `tombstones`, rows
    that say only that something was undone, by opaque ids, do not count: the live models keep those until the
    erasure makes a rebuild drop them)."""
    found = []
    live = " AND deleted_at IS NULL" if tombstones else ""
    active = " AND active" if tombstones else ""
    checks = {
        "users": "SELECT count(*) FROM users WHERE user_id = $1",
        "posts": f"SELECT count(*) FROM posts WHERE author_id = $1{live}",
        "follows": f"SELECT count(*) FROM follows WHERE (follower_id = $1 OR followee_id = $1){active}",
        "interactions": f"SELECT count(*) FROM interactions WHERE user_id = $1{active}",
        "search_users": "SELECT count(*) FROM search_users WHERE user_id = $1",
        "search_posts": f"SELECT count(*) FROM search_posts WHERE author_id = $1{live}",
    }
    for name, sql in checks.items():
        if await pg.fetchval(sql, user_id):
            found.append(name)
    for secret in secrets:
        for table, column in (("posts", "body"), ("search_posts", "body"), ("users", "handle")):
            if await pg.fetchval(f"SELECT count(*) FROM {table} WHERE {column} LIKE '%' || $1 || '%'", secret):
                found.append(f"{table}.{column}:{secret}")
    return found


async def notified_by(client: httpx.AsyncClient, reader: dict[str, str], handle: str) -> int:
    """How many of the reader's notifications name `handle` (or a person no longer there) among their actors."""
    items = (await client.get("/api/notifications", headers=reader)).json()["items"]
    return sum(any(a["handle"] in (handle, "") for a in item["actors"]) for item in items)


async def test_a_deleted_account_leaves_no_readable_trace_in_kafka_or_any_rebuilt_model(
    fast_erasure: str,
    client: httpx.AsyncClient,
    state: State,
    pg: asyncpg.Pool,
    redis_client: aioredis.Redis,
    settings: Settings,
) -> None:
    user_id, handle, github_id, me, refresh = await user_with_github(state)
    bio = f"bio-{new_id()}"
    await state.publisher.publish(
        UserProfileUpdated(actor=user_id, payload=UserProfileUpdatedData(user_id=user_id, bio=bio))
    )
    friend_handle = unique_handle("stay")
    friend = await login(client, friend_handle)
    friend_id = (await client.get("/api/me", headers=friend)).json()["user_id"]
    bodies = [f"secret body {new_id()} #erasure" for _ in range(3)]
    post_ids = [await post(client, me, body) for body in bodies]
    friend_post = await post(client, friend, f"friend stays {new_id()}")
    for pid in post_ids:
        await eventually(lambda pid=pid: visible(pg, pid))
    await eventually(lambda: visible(pg, friend_post))
    assert (await client.post(f"/api/users/{friend_handle}/follow", headers=me)).status_code == 202
    assert (await client.post(f"/api/users/{handle}/follow", headers=friend)).status_code == 202
    assert (await client.post(f"/api/posts/{friend_post}/like", headers=me)).status_code == 202
    assert (await client.post(f"/api/posts/{post_ids[0]}/like", headers=friend)).status_code == 202
    for kind in ("repost", "bookmark"):
        assert (await client.post(f"/api/posts/{friend_post}/{kind}", headers=me)).status_code == 202
    reply = await client.post("/api/posts", json={"body": bodies[0] + " (reply)", "reply_to": friend_post}, headers=me)
    assert reply.status_code == 202, reply.text
    third = unique_handle("muted")
    await login(client, third)
    await eventually(lambda: client.get(f"/api/users/{third}"), until=lambda r: r.status_code == 200)
    assert (await client.post(f"/api/users/{third}/mute", headers=me)).status_code == 202
    assert (await client.post(f"/api/users/{third}/block", headers=me)).status_code == 202
    report_comment = f"report comment {new_id()}"
    report = {"handle": third, "reason": "spam", "comment": report_comment}
    assert (await client.post("/api/reports", json=report, headers=me)).status_code == 202
    await eventually(lambda: followers(pg, friend_id), until=lambda n: n == 1)
    await eventually(lambda: followers(pg, user_id), until=lambda n: n == 1)
    reports = "SELECT count(*) FROM reports WHERE reporter_id = $1"
    await eventually(lambda: pg.fetchval(reports, user_id), until=lambda n: n == 1)
    muting = list_key("mute", user_id)
    await eventually(lambda: redis_client.zcard(muting), until=lambda n: n == 1)
    blocking = list_key("block", user_id)
    await eventually(lambda: redis_client.zcard(blocking), until=lambda n: n == 1)
    likes = "SELECT like_count FROM post_counters WHERE post_id = $1"
    await eventually(lambda: pg.fetchval(likes, friend_post), until=lambda n: n == 1)
    reposts = "SELECT repost_count FROM post_counters WHERE post_id = $1"
    await eventually(lambda: pg.fetchval(reposts, friend_post), until=lambda n: n == 1)
    await eventually(lambda: notified_by(client, friend, handle), until=lambda n: n >= 3)  # follow, like, repost

    # Wrong confirmation: a 422 naming the field, nothing happens.
    wrong = await client.request("DELETE", "/api/me", json={"confirm": "someone-else"}, headers=me)
    assert wrong.status_code == 422 and wrong.json()["error"]["field"] == "confirm"
    deleted = await client.request("DELETE", "/api/me", json={"confirm": handle}, headers=me)
    assert deleted.status_code == 202, deleted.text
    assert (await client.get("/api/me", headers=me)).status_code == 401, "the session ended at once"
    refused = await client.post("/auth/refresh", json={"refresh_token": refresh})
    assert refused.status_code == 401, "and so did its refresh token"

    # Every read model lets go; the friend's counts go down.
    await eventually(lambda: followers(pg, friend_id), until=lambda n: n == 0)
    await eventually(lambda: pg.fetchval(likes, friend_post), until=lambda n: n == 0)
    await eventually(lambda: traces(pg, user_id, bodies, tombstones=True), until=lambda t: t == [], timeout=30)
    assert (await client.get(f"/api/users/{handle}")).status_code == 404
    await eventually(lambda: pg.fetchval(reports, user_id), until=lambda n: n == 0)  # the reports it filed go
    await eventually(lambda: redis_client.zcard(muting), until=lambda n: n == 0)  # unmuted by the derived undo
    await eventually(lambda: redis_client.zcard(blocking), until=lambda n: n == 0)
    await eventually(lambda: pg.fetchval(reposts, friend_post), until=lambda n: n == 0)
    await eventually(lambda: notified_by(client, friend, handle), until=lambda n: n == 0)
    again = await client.post("/auth/dev-login", json={"login": handle})
    assert again.status_code == 409 and again.json()["error"]["field"] == "login", "the handle is quarantined"

    # After the erasure delay the keys are gone: nothing of theirs is readable in the log.
    done = "SELECT done_at IS NOT NULL FROM erasures WHERE target = $1"
    await eventually(lambda: pg.fetchval(done, f"u:{user_id}"), timeout=30)
    log = await raw_log(settings.bootstrap_servers)
    secrets = [*bodies, handle, f"Name {handle}", bio, str(github_id), f"avatars.example/{handle}", report_comment]
    for secret in secrets:
        assert secret.encode() not in log, f"{secret!r} is readable in the log"
    assert (await verify(settings, user_id)).clean

    # A rebuild of every model: no trace, no dead letters, the friend unchanged.
    letters = await dead_letters(settings)
    friend_before = await client.get(f"/api/users/{friend_handle}")
    friend_posts_before = await pg.fetch("SELECT post_id, body FROM posts WHERE author_id = $1", friend_id)
    await rebuild_all()
    assert await traces(pg, user_id, bodies) == []
    assert await dead_letters(settings) == letters, "the rebuild dead-lettered nothing new"
    friend_after = await client.get(f"/api/users/{friend_handle}")
    assert friend_after.json() == friend_before.json()
    assert await pg.fetch("SELECT post_id, body FROM posts WHERE author_id = $1", friend_id) == friend_posts_before
    assert not await pg.fetchval(likes, friend_post), "no like of theirs counts (no counter row: none)"

    await pg.execute("UPDATE handle_quarantine SET until = now() WHERE handle_sha256 = $1", handle_digest(handle))
    freed = await client.post("/auth/dev-login", json={"login": handle})
    assert freed.status_code == 200, "once the quarantine ends, the handle is free"


async def test_a_deleted_post_is_erased_from_the_log_and_the_author_stays(
    fast_erasure: str, client: httpx.AsyncClient, pg: asyncpg.Pool, settings: Settings
) -> None:
    handle = unique_handle("keeps")
    me = await login(client, handle)
    gone_body, kept_body = f"regret {new_id()}", f"keeper {new_id()}"
    gone, kept = await post(client, me, gone_body), await post(client, me, kept_body)
    await eventually(lambda: visible(pg, gone))
    await eventually(lambda: visible(pg, kept))
    assert not (await verify(settings, gone)).clean, "before the delete, the post is readable"
    assert (await client.delete(f"/api/posts/{gone}", headers=me)).status_code == 202
    done = "SELECT done_at IS NOT NULL FROM erasures WHERE target = $1"
    await eventually(lambda: pg.fetchval(done, f"p:{gone}"), timeout=30)
    [row] = [r for r in await status(settings) if r["target"] == f"p:{gone}"]
    assert row["done_at"] is not None and row["keys_erased"] == 1

    log = await raw_log(settings.bootstrap_servers)
    assert gone_body.encode() not in log
    verdict = await verify(settings, gone)
    assert verdict.clean and verdict.mentioned >= 3, verdict  # created, parsed, deleted: none readable
    letters = await dead_letters(settings)
    await rebuild_all()
    assert await pg.fetchval("SELECT count(*) FROM posts WHERE post_id = $1", gone) == 0
    assert await pg.fetchval("SELECT body FROM posts WHERE post_id = $1", kept) == kept_body
    assert (await client.get(f"/api/users/{handle}")).status_code == 200
    assert await dead_letters(settings) == letters, "the rebuild dead-lettered nothing new"
