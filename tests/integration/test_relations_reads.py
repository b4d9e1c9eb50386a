"""Mutes and blocks on the read paths beyond the timeline: conversations above a post, user search, who to follow,
and reposts whose newest reposter is hidden. Every consumer runs; the viewer acts over HTTP."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import eventually
from tests.integration.test_relations import post, until_listed, until_shown, user

pytestmark = pytest.mark.usefixtures("pipeline")


async def relate(client: httpx.AsyncClient, headers: dict[str, str], kind: str, handle: str) -> None:
    """`headers`' user mutes / blocks `handle`, once the relations model shows it."""
    assert (await client.post(f"/api/users/{handle}/{kind}", headers=headers)).status_code == 202
    await until_listed(client, f"{kind}s", headers, handle)


async def test_a_hidden_ancestor_is_a_placeholder_in_the_chain(client: httpx.AsyncClient) -> None:
    me, mine = await user(client, "ta")
    muted, theirs = await user(client, "tam")
    _, blockers = await user(client, "tab")
    _, others = await user(client, "tao")
    root = await post(client, theirs, "the muted's root, secret words")
    middle = await post(client, blockers, "the blocker's reply, secret words", reply_to=root)
    leaf = await post(client, others, "a visible reply", reply_to=middle)
    await until_shown(client, f"/api/posts/{leaf}/thread", mine, root, middle)

    await relate(client, mine, "mute", muted)
    await relate(client, blockers, "block", me)
    thread = (await client.get(f"/api/posts/{leaf}/thread", headers=mine)).json()
    ancestors = thread["ancestors"]
    assert [a["id"] for a in ancestors] == [root, middle], "the chain holds"
    assert all(set(a) == {"id", "hidden", "reply_to", "created_at"} and a["hidden"] is True for a in ancestors)
    assert [a["reply_to"] for a in ancestors] == [None, root]
    assert thread["post"]["id"] == leaf
    page = await client.get(f"/posts/{leaf}", headers=mine)
    assert page.status_code == 200 and "secret words" not in page.text and muted not in page.text
    assert page.text.count("This post is by an account you muted or blocked") == 2
    # Anyone else (and an anonymous reader) still sees the posts.
    for headers in (others, None):
        shown = (await client.get(f"/api/posts/{leaf}/thread", headers=headers)).json()["ancestors"]
        assert [a["id"] for a in shown] == [root, middle] and all("html" in a for a in shown)


async def test_user_search_leaves_out_blocks_either_way_but_finds_the_muted(client: httpx.AsyncClient) -> None:
    me, mine = await user(client, "us")
    word = me.split("-")[1][-8:]
    muted, _ = await user(client, f"m{word}")
    blocked, _ = await user(client, f"b{word}")
    blocker, blockers = await user(client, f"k{word}")
    friend, _ = await user(client, f"f{word}")
    everyone = {muted, blocked, blocker, friend}

    async def found(headers: dict[str, str] | None) -> set[str]:
        response = await client.get(f"/api/search?type=users&q={word}", headers=headers)
        assert response.status_code == 200, response.text
        return {u["handle"] for u in response.json()["items"]}

    await eventually(lambda: found(mine), until=lambda handles: everyone <= handles, timeout=60)
    await relate(client, mine, "mute", muted)
    await relate(client, mine, "block", blocked)
    await relate(client, blockers, "block", me)
    assert await found(mine) == {me, muted, friend}
    assert everyone <= await found(None), "anonymous searches are unchanged"


async def test_who_to_follow_suggests_no_one_muted_blocked_or_blocking(client: httpx.AsyncClient) -> None:
    me, mine = await user(client, "wf")
    friend, friends = await user(client, "wff")
    muted, _ = await user(client, "wfm")
    blocked, _ = await user(client, "wfb")
    blocker, blockers = await user(client, "wfk")
    other, _ = await user(client, "wfo")
    candidates = {muted, blocked, blocker, other}
    assert (await client.post(f"/api/users/{friend}/follow", headers=mine)).status_code == 202
    for handle in sorted(candidates):
        assert (await client.post(f"/api/users/{handle}/follow", headers=friends)).status_code == 202

    async def suggested() -> set[str]:
        response = await client.get("/api/suggestions?limit=3", headers=mine)
        assert response.status_code == 200, response.text
        return {s["handle"] for s in response.json()["items"]}

    await eventually(suggested, until=lambda handles: len(handles & candidates) == 3, timeout=60)
    await relate(client, mine, "mute", muted)
    await relate(client, mine, "block", blocked)
    await relate(client, blockers, "block", me)
    assert await suggested() == {other}, "the hidden are skipped, and the limit is filled from below them"
    page = await client.get("/", headers=mine)
    assert page.status_code == 200 and other in page.text
    assert not [h for h in (muted, blocked, blocker) if f"/@{h}" in page.text]


async def test_an_earlier_visible_reposter_shows_when_the_newest_is_hidden(client: httpx.AsyncClient) -> None:
    _, mine = await user(client, "rp")
    early, earlies = await user(client, "rpe")
    late, lates = await user(client, "rpl")
    _, authors = await user(client, "rpa")
    for handle in (early, late):
        assert (await client.post(f"/api/users/{handle}/follow", headers=mine)).status_code == 202
    original = await post(client, authors, "a post both of them repost")

    async def reposter() -> str | None:
        items = (await client.get("/api/timeline", headers=mine)).json()["items"]
        return next((p.get("reposted_by", {}).get("handle") for p in items if p["id"] == original), None)

    assert (await client.post(f"/api/posts/{original}/repost", headers=earlies)).status_code == 202
    await eventually(reposter, until=lambda who: who == early, timeout=60)
    assert (await client.post(f"/api/posts/{original}/repost", headers=lates)).status_code == 202
    await eventually(reposter, until=lambda who: who == late, timeout=60)

    await relate(client, mine, "mute", late)
    assert await eventually(reposter, until=lambda who: who == early, timeout=10) == early
