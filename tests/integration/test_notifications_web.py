"""The bell and the notifications page: the unread count rendered in the nav of every page, sent live over the
page's existing event stream (to its owner only), and `/notifications`, which lists the items and marks them read."""

from __future__ import annotations

import re

import asyncpg
import httpx
import orjson
import pytest
from starlette.applications import Starlette

from tests.conftest import eventually
from tests.integration.helpers import login, unique_handle
from tests.integration.test_sse import connected, stream


def badge(html: str) -> tuple[str, bool]:
    """(count shown, hidden) of the bell's badge."""
    found = re.search(r'<span class="badge" data-unread( hidden)?>(\d+)<', html)
    assert found, "no bell on the page"
    return found.group(2), bool(found.group(1))


async def unread(client: httpx.AsyncClient, headers: dict[str, str]) -> int:
    return (await client.get("/api/notifications/unread", headers=headers)).json()["count"]


@pytest.mark.usefixtures("pipeline")
async def test_the_bell_counts_live_and_the_page_lists_and_reads(
    app: Starlette, client: httpx.AsyncClient, pg: asyncpg.Pool
) -> None:
    ann, bob = unique_handle("ann"), unique_handle("bob")
    ann_h, bob_h = await login(client, ann), await login(client, bob)
    registered = "SELECT count(*) FROM users WHERE lower(handle) = ANY($1::text[])"
    await eventually(lambda: pg.fetchval(registered, [ann, bob]), until=lambda n: n == 2, timeout=60)
    assert badge((await client.get("/explore", headers=ann_h)).text) == ("0", True)

    async with stream(app, "/events?feed=all", ann_h) as ann_stream, stream(app, "/events?feed=all", bob_h) as bobs:
        await connected(ann_stream)
        await connected(bobs)
        assert (await client.post(f"/api/users/{ann}/follow", headers=bob_h)).status_code == 202
        await ann_stream.until(lambda s: s.named("notifications"))
        assert orjson.loads(ann_stream.named("notifications")[-1]["data"]) == {"unread": 1}
    assert bobs.named("notifications") == []  # only the recipient's streams hear of it

    for path in ("/", "/explore", f"/@{bob}"):  # every page, rendered on the server
        assert badge((await client.get(path, headers=ann_h)).text) == ("1", False), path
    page = await client.get("/notifications", headers=ann_h)
    assert page.status_code == 200
    assert "followed you" in page.text and f'href="/@{bob}"' in page.text and "notification unread" in page.text
    assert badge(page.text) == ("0", True)
    await eventually(lambda: unread(client, ann_h), until=lambda n: n == 0, timeout=30)  # viewing read them
    again = await client.get("/notifications", headers=ann_h)
    assert "followed you" in again.text and "notification unread" not in again.text
    anonymous = await client.get("/notifications")
    assert anonymous.status_code in (302, 303) and anonymous.headers["location"].startswith("/login")


@pytest.mark.usefixtures("pipeline")
async def test_a_bell_stream_starts_with_the_count_and_carries_only_the_bell(
    app: Starlette, client: httpx.AsyncClient, pg: asyncpg.Pool
) -> None:
    ann, bob = unique_handle("ann"), unique_handle("bob")
    ann_h, bob_h = await login(client, ann), await login(client, bob)
    registered = "SELECT count(*) FROM users WHERE lower(handle) = ANY($1::text[])"
    await eventually(lambda: pg.fetchval(registered, [ann, bob]), until=lambda n: n == 2, timeout=60)
    assert (await client.post(f"/api/users/{ann}/follow", headers=bob_h)).status_code == 202
    await eventually(lambda: unread(client, ann_h), until=lambda n: n == 1, timeout=30)

    async with stream(app, "/events?feed=bell", ann_h) as bell:
        await bell.until(lambda s: s.named("notifications"))
        assert orjson.loads(bell.named("notifications")[0]["data"]) == {"unread": 1}  # as it is when it opens
        wait = {"Prefer": "wait=5"}
        created = await client.post("/api/posts", json={"body": f"hi @{ann}"}, headers={**bob_h, **wait})
        await bell.until(lambda s: len(s.named("notifications")) == 2)
        assert orjson.loads(bell.named("notifications")[1]["data"]) == {"unread": 2}
        assert (await client.delete(f"/api/posts/{created.json()['id']}", headers=bob_h)).status_code == 202
        await bell.until(lambda s: len(s.named("notifications")) == 3)  # the mention went with its post
    assert bell.named("post") == [] and bell.named("post-deleted") == [], "no posts on a bell stream"
    assert (await client.get("/events?feed=bell")).status_code == 401


@pytest.mark.usefixtures("pipeline")
async def test_follow_lists_have_pages_linked_from_the_profile_and_bios_render_like_posts(
    client: httpx.AsyncClient, pg: asyncpg.Pool
) -> None:
    ann, bob = unique_handle("ann"), unique_handle("bob")
    ann_h, bob_h = await login(client, ann), await login(client, bob)
    registered = "SELECT count(*) FROM users WHERE lower(handle) = ANY($1::text[])"
    await eventually(lambda: pg.fetchval(registered, [ann, bob]), until=lambda n: n == 2, timeout=60)
    bio = f"Hi, see https://example.org and @{bob} on #birds <script>alert(1)</script>"
    assert (await client.patch("/api/me", json={"bio": bio}, headers=ann_h)).status_code in (200, 202)
    assert (await client.post(f"/api/users/{ann}/follow", headers=bob_h)).status_code == 202

    async def profile() -> str:
        return (await client.get(f"/@{ann}")).text

    html = await eventually(profile, until=lambda t: "1</strong> follower<" in t and "#birds" in t, timeout=60)
    assert f'<a href="/@{ann}/followers"><strong>1</strong> follower</a>' in html
    assert f'<a href="/@{ann}/following"><strong>0</strong> following</a>' in html
    assert 'href="https://example.org"' in html and f'href="/@{bob}"' in html and 'href="/tags/birds"' in html
    assert "<script>alert" not in html
    followers = await client.get(f"/@{ann}/followers")
    assert followers.status_code == 200 and f'href="/@{bob}"' in followers.text
    following = await client.get(f"/@{bob}/following")
    assert following.status_code == 200 and f'href="/@{ann}"' in following.text
    assert "follows nobody yet" in (await client.get(f"/@{ann}/following")).text
    assert (await client.get("/@nobody-here-at-all/followers")).status_code == 404
