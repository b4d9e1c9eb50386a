"""Reports and takedowns end to end: `POST /api/reports`, the operators' `chirp reports list|show|resolve`, what a
takedown and a suspension hide on every read path, the reporter's view of the outcome, and a replay of the model."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from chirp.settings import Settings
from consumers import moderation
from consumers.runtime import Context
from producers.broker import Publisher
from schemas.events import (
    AccountDeleted,
    AccountDeletedData,
    ReportFiled,
    ReportFiledData,
    ReportResolved,
    ReportResolvedData,
    new_id,
)
from store.reports import SUSPENDED_KEY
from store.trending import DEFAULT_PREFIX
from tests.conftest import eventually
from tests.integration.explore_support import ago
from tests.integration.helpers import login, unique_handle
from tests.integration.test_search import word
from tests.integration.test_trending import burst, ranking, tag, tags_of

pytestmark = pytest.mark.usefixtures("pipeline")
WAIT = {"Prefer": "wait=5"}


def chirp(*args: str) -> subprocess.CompletedProcess[str]:
    """`chirp ARGS...` as an operator runs it (this run's topics, database and Redis)."""
    cmd = [sys.executable, "-m", "ops", *args]
    return subprocess.run(cmd, env={**os.environ}, capture_output=True, text=True, timeout=300, check=False)


async def operator(*args: str) -> str:
    """The output of a `chirp` command that must succeed."""
    done = await asyncio.to_thread(chirp, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


async def users(client: httpx.AsyncClient, pg: asyncpg.Pool, *handles: str) -> list[dict[str, str]]:
    """Logged-in users, once the users model has them."""
    headers = [await login(client, h) for h in handles]
    sql = "SELECT count(*) FROM users WHERE lower(handle) = ANY($1::text[])"
    await eventually(lambda: pg.fetchval(sql, [h.lower() for h in handles]), until=lambda n: n == len(handles))
    return headers


async def report(client: httpx.AsyncClient, headers: dict[str, str], **body: Any) -> str:
    response = await client.post("/api/reports", json=body, headers=headers)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "accepted"
    return str(response.json()["id"])


async def mine(client: httpx.AsyncClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    response = await client.get("/api/me/reports", headers=headers)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def ids(client: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None, **params: Any) -> list[str]:
    response = await client.get(url, headers=headers, params=params)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


async def mentions(client: httpx.AsyncClient, headers: dict[str, str]) -> list[str]:
    response = await client.get("/api/notifications", headers=headers)
    return [i["post"]["id"] for i in response.json()["items"] if i["type"] == "mention"]


async def test_bad_reports_are_422_naming_the_field(client: httpx.AsyncClient, pg: asyncpg.Pool) -> None:
    ann = unique_handle("ann")
    (ann_h,) = await users(client, pg, ann)
    post_id = (await client.post("/api/posts", json={"body": "x"}, headers={**ann_h, **WAIT})).json()["id"]
    for body, field in [
        ({"reason": "spam"}, "post_id"),
        ({"post_id": post_id, "handle": ann, "reason": "spam"}, "post_id"),
        ({"post_id": post_id}, "reason"),
        ({"post_id": post_id, "reason": "boring"}, "reason"),
        ({"post_id": new_id(), "reason": "spam"}, "post_id"),
        ({"handle": unique_handle("nobody"), "reason": "spam"}, "handle"),
        ({"handle": "not a handle", "reason": "spam"}, "handle"),
        ({"post_id": post_id, "reason": "spam", "comment": "x" * 1001}, "comment"),
        ({"post_id": post_id, "reason": "spam", "extra": 1}, "extra"),
    ]:
        response = await client.post("/api/reports", json=body, headers=ann_h)
        assert response.status_code == 422 and response.json()["error"]["field"] == field, (body, response.text)
    assert (await client.post("/api/reports", json={"post_id": post_id, "reason": "spam"})).status_code in (401, 403)
    assert (await client.get("/api/me/reports")).status_code == 401


async def test_a_takedown_hides_the_post_everywhere_and_the_reporter_sees_it(
    client: httpx.AsyncClient, pg: asyncpg.Pool
) -> None:
    ann, bob, cat = unique_handle("ann"), unique_handle("bob"), unique_handle("cat")
    ann_h, bob_h, cat_h = await users(client, pg, ann, bob, cat)
    assert (await client.post(f"/api/users/{ann}/follow", headers=bob_h)).status_code == 202
    secret, name = word(), word()
    body = f"buy {secret} #{name} @{bob}"
    post_id = (await client.post("/api/posts", json={"body": body}, headers={**ann_h, **WAIT})).json()["id"]
    kept = (await client.post("/api/posts", json={"body": f"fine #{name}"}, headers={**ann_h, **WAIT})).json()["id"]
    await eventually(lambda: ids(client, "/api/search", q=secret), until=lambda found: found == [post_id])
    await eventually(lambda: mentions(client, bob_h), until=lambda found: post_id in found)

    report_id = await report(client, cat_h, post_id=post_id, reason="spam", comment="ads")
    await eventually(lambda: mine(client, cat_h), until=lambda items: [i["id"] for i in items] == [report_id])
    (filed,) = await mine(client, cat_h)
    assert (filed["status"], filed["outcome"], filed["post_id"], filed["handle"]) == ("open", None, post_id, ann)
    assert (filed["reason"], filed["comment"]) == ("spam", "ads")
    assert report_id in await operator("reports", "list", "--open", "--limit", "100000")
    shown = await operator("reports", "show", report_id)
    assert f"post {post_id} by @{ann}" in shown and "spam" in shown and "ads" in shown

    await operator("reports", "resolve", report_id, "--action", "takedown", "--note", "commercial spam")

    async def gone() -> int:
        return (await client.get(f"/api/posts/{post_id}", headers=bob_h)).status_code

    await eventually(gone, until=lambda status: status == 404)
    assert (await client.get(f"/api/posts/{post_id}")).status_code == 404
    removed = await client.get(f"/api/posts/{post_id}", headers=ann_h)
    assert removed.status_code == 410 and removed.json()["error"]["code"] == "removed_by_moderators"
    assert "removed by moderators" in removed.json()["error"]["message"]
    assert post_id not in await ids(client, "/api/posts", limit=50)
    assert await ids(client, f"/api/users/{ann}/posts") == [kept]
    assert await ids(client, f"/api/tags/{name}/posts") == [kept]
    await eventually(lambda: ids(client, "/api/search", q=secret), until=lambda found: found == [])
    await eventually(lambda: ids(client, "/api/timeline", bob_h), until=lambda found: found == [kept], timeout=30)
    await eventually(lambda: mentions(client, bob_h), until=lambda found: post_id not in found)

    (decided,) = await eventually(lambda: mine(client, cat_h), until=lambda items: items[0]["status"] == "resolved")
    assert decided["outcome"] == "takedown" and decided["resolved_at"]
    assert report_id not in await operator("reports", "list", "--open", "--limit", "100000")
    assert report_id in await operator("reports", "list", "--limit", "100000")


async def test_a_suspension_hides_the_account_and_refuses_its_logins_and_tokens(
    client: httpx.AsyncClient, pg: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    dan, eve = unique_handle("dan"), unique_handle("eve")
    dan_h, eve_h = await users(client, pg, dan, eve)
    dan_id = (await client.get("/api/me", headers=dan_h)).json()["user_id"]  # opaque
    post_id = (await client.post("/api/posts", json={"body": "spam"}, headers={**dan_h, **WAIT})).json()["id"]

    async def found_in_search() -> list[str]:
        response = await client.get("/api/search", params={"q": dan, "type": "users"})
        assert response.status_code == 200, response.text
        return [u["handle"] for u in response.json()["items"]]

    await eventually(found_in_search, until=lambda handles: dan in handles)
    report_id = await report(client, eve_h, handle=dan.upper(), reason="abuse")
    await eventually(lambda: mine(client, eve_h), until=lambda items: len(items) == 1)
    refused = await asyncio.to_thread(chirp, "reports", "resolve", report_id, "--action", "takedown")
    assert refused.returncode == 2 and "account" in refused.stderr  # a takedown needs a post
    await operator("reports", "resolve", report_id, "--action", "suspend")

    async def suspended() -> int:
        return (await client.get("/api/me", headers=dan_h)).status_code

    assert await eventually(suspended, until=lambda status: status == 403) == 403
    assert (await client.post("/auth/dev-login", json={"login": dan})).status_code == 403
    assert (await client.post("/api/posts", json={"body": "more"}, headers=dan_h)).status_code == 403
    assert (await client.get(f"/api/users/{dan}")).status_code == 404
    await eventually(lambda: client.get(f"/api/posts/{post_id}"), until=lambda r: r.status_code == 404)
    await eventually(found_in_search, until=lambda handles: dan not in handles)
    (decided,) = await eventually(lambda: mine(client, eve_h), until=lambda items: items[0]["status"] == "resolved")
    assert decided["outcome"] == "suspend" and decided["handle"] == dan
    hidden = await redis_client.hget(f"{DEFAULT_PREFIX}moderation", f"@{dan.lower()}")
    assert hidden is not None and hidden.endswith("|1")

    # The model rebuilds from the log: reports, outcomes and the suspension.
    await redis_client.srem(SUSPENDED_KEY, dan_id)
    await pg.execute("DELETE FROM reports WHERE report_id = $1", report_id)
    await operator("replay", "moderation")
    assert await redis_client.sismember(SUSPENDED_KEY, dan_id)
    assert [(i["id"], i["outcome"]) for i in await mine(client, eve_h)] == [(report_id, "suspend")]


async def test_trending_leaves_out_taken_down_posts(
    client: httpx.AsyncClient, pg: asyncpg.Pool, publisher: Publisher
) -> None:
    (fay_h,) = await users(client, pg, unique_handle("fay"))
    name = tag()
    posts = burst(name, 4, ago(seconds=30))
    await publisher.publish_many(posts)
    await eventually(lambda: ranking(client), until=lambda b: name in tags_of(b), timeout=60)
    for post in posts[:3]:
        await eventually(lambda p=post: client.get(f"/api/posts/{p.payload.post_id}"), until=lambda r: r.is_success)
        report_id = await report(client, fay_h, post_id=post.payload.post_id, reason="illegal")
        await eventually(lambda: mine(client, fay_h), until=lambda items, r=report_id: r in [i["id"] for i in items])
        await operator("reports", "resolve", report_id, "--action", "takedown")
    await eventually(lambda: ranking(client), until=lambda b: name not in tags_of(b), timeout=60)


@pytest.mark.parametrize("action", ["dismiss", "takedown", "suspend"])
async def test_a_departed_reporters_decided_report_leaves_the_row_a_rebuild_after_its_erasure_leaves(
    action: str, settings: Settings, pg: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    """Live, the reports an account filed go with it; a rebuild once its key is erased reads no report-filed, only the
    operator's decision: both leave the decision alone, as its row."""
    ctx = Context(settings=settings, pg=pg, redis=redis_client, publisher=None)  # type: ignore[arg-type]
    reporter, author, post_id, at = new_id(), new_id(), new_id(), datetime.now(UTC)

    def events(report_id: str) -> tuple[ReportFiled, ReportResolved]:
        filed = ReportFiledData(
            report_id=report_id, reporter_id=reporter, post_id=post_id, user_id=author, reason="spam"
        )
        taken_down = post_id if action == "takedown" else None
        decided = ReportResolvedData(report_id=report_id, action=action, note="why", post_id=taken_down, user_id=author)
        return ReportFiled(payload=filed), ReportResolved(actor="operator", occurred_at=at, payload=decided)

    live, rebuilt, still_open = new_id(), new_id(), new_id()
    await moderation.on_report_filed([events(live)[0], events(still_open)[0]], ctx)
    await moderation.on_report_resolved([events(live)[1]], ctx)
    await moderation.on_account_deleted([AccountDeleted(payload=AccountDeletedData(user_id=reporter))], ctx)
    await moderation.on_report_resolved([events(rebuilt)[1]], ctx)  # all a rebuild reads once the key is erased
    row = "SELECT * FROM reports WHERE report_id = $1"
    found, expected = await pg.fetchrow(row, live), await pg.fetchrow(row, rebuilt)
    assert found is not None, "the operator's decision stays"
    assert {**dict(found), "report_id": rebuilt} == dict(expected)
    assert await pg.fetchrow(row, still_open) is None, "an open report of theirs goes"
