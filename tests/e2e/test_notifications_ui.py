"""Notifications and conversations in Chromium: the bell counts live over the page's one event stream, the
notifications page lists and reads them, the post page shows the chain and the tree and names whom a reply answers,
the people pages list followers and following; without JavaScript all the same."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from tests.conftest import eventually
from tests.e2e.conftest import Site
from tests.e2e.test_web_ui import dev_login, new_context, reload_until, submit, unique


async def follow(page: Page, handle: str) -> None:
    await page.goto(f"/@{handle}")
    async with page.expect_navigation():
        await page.get_by_role("button", name=re.compile("^Follow")).click()


async def test_the_bell_counts_live_and_the_page_reads_them(browser: Browser, site: Site) -> None:
    ada_login, bob_login = unique("ada-"), unique("bob-")
    ada_ctx, bob_ctx = await new_context(browser, site), await new_context(browser, site)
    ada, bob = await ada_ctx.new_page(), await bob_ctx.new_page()
    await dev_login(ada, ada_login)
    await dev_login(bob, bob_login)
    await ada.get_by_label("What’s happening?").fill(f"Hello from {ada_login}")
    await submit(ada, "Post")
    card = await reload_until(ada, f"/@{ada_login}", lambda p: p.locator("article.post"))
    post_id = (await card.get_attribute("id") or "").removeprefix("post-")

    streams: list[str] = []
    ada.on("request", lambda r: streams.append(r.url) if "/events?" in r.url else None)
    await ada.goto("/")
    bell = ada.locator("nav .bell [data-unread]")
    await expect(bell).to_be_hidden()
    await ada.wait_for_timeout(1000)  # let the page's event stream connect
    await follow(bob, ada_login)
    await bob.goto(f"/posts/{post_id}")
    await bob.get_by_label("Write a reply").fill(f"Nice one @{ada_login}")
    await submit(bob, "Reply")
    await expect(bell).to_have_text(re.compile("^2"), timeout=30_000)  # live: no reload, one stream
    assert len(streams) == 1, streams

    # The thread: the reply's page shows the post above it and whom it answers.
    reply = await reload_until(bob, f"/posts/{post_id}", lambda p: p.locator("#replies article.post"))
    reply_id = (await reply.get_attribute("id") or "").removeprefix("post-")
    await bob.goto(f"/posts/{reply_id}")
    await expect(bob.locator(f".thread-chain #post-{post_id}")).to_be_visible()
    await bob.goto("/")
    await expect(bob.locator(f"#post-{reply_id} .reply-note")).to_have_text(f"Replying to @{ada_login}")

    async with ada.expect_navigation():
        await ada.locator("nav .bell").click()
    items = ada.locator(".notification")
    await expect(items).to_have_count(2)
    await expect(items.nth(0)).to_contain_text("replied to you")
    await expect(items.nth(1)).to_contain_text("followed you")
    follower = items.nth(1).get_by_role("link", name=re.compile(bob_login))
    await expect(follower).to_have_attribute("href", f"/@{bob_login}")
    await expect(bell).to_be_hidden()
    await reload_until(ada, "/notifications", lambda p: p.locator(".notification:not(.unread)"))
    await ada_ctx.close()
    await bob_ctx.close()


async def test_the_bell_without_javascript(browser: Browser, site: Site) -> None:
    ada_login, cat_login = unique("ada-"), unique("cat-")
    ada_ctx = await new_context(browser, site, javascript=False)
    cat_ctx = await new_context(browser, site, javascript=False)
    ada, cat = await ada_ctx.new_page(), await cat_ctx.new_page()
    await dev_login(ada, ada_login)
    await dev_login(cat, cat_login)
    await follow(cat, ada_login)
    badge = await reload_until(ada, "/explore", lambda p: p.locator("nav .bell [data-unread]:not([hidden])"))
    await expect(badge).to_have_text(re.compile("^1"))
    await ada.goto("/notifications")
    await expect(ada.locator(".notification")).to_contain_text("followed you")
    # The profile's count leads to the list of followers, and from there to the follower.
    await ada.goto(f"/@{ada_login}")
    async with ada.expect_navigation():
        await ada.get_by_role("link", name="1 follower").click()
    async with ada.expect_navigation():
        await ada.locator(".people").get_by_role("link", name=re.compile(cat_login)).click()
    await expect(ada).to_have_url(re.compile(f"/@{cat_login}$"))
    async with ada.expect_navigation():
        await ada.get_by_role("link", name="1 following").click()
    await expect(ada.locator(".people")).to_contain_text(ada_login)
    await ada_ctx.close()
    await cat_ctx.close()


async def test_the_bell_is_live_on_pages_without_posts_over_one_stream(browser: Browser, site: Site) -> None:
    """Settings, explore and the people lists have no post stream of their own: each opens one
    stream carrying only the bell, and a like, a repost and a follow show on it without a reload."""
    ada_login, bob_login = unique("ada-"), unique("bob-")
    ada_ctx, bob_ctx = await new_context(browser, site), await new_context(browser, site)
    ada, bob = await ada_ctx.new_page(), await bob_ctx.new_page()
    await dev_login(ada, ada_login)
    await dev_login(bob, bob_login)
    await ada.get_by_label("What’s happening?").fill(f"Hello from {ada_login}")
    await submit(ada, "Post")
    card = await reload_until(ada, f"/@{ada_login}", lambda p: p.locator("article.post"))
    post_id = (await card.get_attribute("id") or "").removeprefix("post-")
    await bob.goto(f"/posts/{post_id}")

    streams: list[str] = []
    ada.on("request", lambda r: streams.append(r.url) if "/events?" in r.url else None)
    bell = ada.locator("nav .bell [data-unread]")

    async def bob_likes() -> None:
        await bob.locator(f"#post-{post_id} form[data-interact=like] button").click()

    async def bob_reposts() -> None:
        await bob.locator(f"#post-{post_id} form[data-interact=repost] button").click()

    async def bob_follows() -> None:
        await follow(bob, ada_login)

    pages = ("/settings", "/explore", f"/@{ada_login}/followers", f"/@{ada_login}/following")
    for count, (path, act) in enumerate(zip(pages, (bob_likes, bob_reposts, bob_follows, None), strict=True), 1):
        streams.clear()
        async with ada.expect_response(lambda r: "/events?feed=bell" in r.url):  # subscribed once it answers
            await ada.goto(path)
        if act is None:  # nothing new: the stream's first event is the count as it is
            await expect(bell).to_have_text(re.compile(f"^{count - 1}"))
            break
        await act()
        await expect(bell).to_have_text(re.compile(f"^{count}"), timeout=30_000)  # live, no reload
        assert [s.split("?", 1)[1] for s in streams] == ["feed=bell"], streams
    async with ada.expect_navigation():
        await ada.locator("nav .bell").click()
    items = ada.locator(".notification")
    await expect(items.nth(0)).to_contain_text("followed you")
    await expect(items.nth(1)).to_contain_text("reposted your post")
    await expect(items.nth(2)).to_contain_text("liked your post")
    await ada_ctx.close()
    await bob_ctx.close()


async def api_user(http: httpx.AsyncClient, login: str) -> dict[str, str]:
    response = await http.post("/auth/dev-login", json={"login": login})
    assert response.status_code == 200, response.text
    http.cookies.clear()
    return {"Authorization": f"Bearer {response.json()['access_token']}", "Prefer": "wait=5"}


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
async def test_a_whole_conversation_the_people_pages_and_the_notifications_page(
    browser: Browser, site: Site, javascript: bool
) -> None:
    """A reply to a reply shows in the root's tree, the chain above a reply names whom it answers and survives a
    deleted post in the middle, the people pages list who follows whom, and viewing the notifications page reads
    them: with and without JavaScript."""
    ada_login, bob_login, cat_login = unique("ada-"), unique("bob-"), unique("cat-")
    async with httpx.AsyncClient(base_url=site.url, timeout=10) as http:
        ada_h, bob_h, cat_h = [await api_user(http, h) for h in (ada_login, bob_login, cat_login)]
        root = (await http.post("/api/posts", json={"body": f"Root by {ada_login}"}, headers=ada_h)).json()["id"]
        middle = await http.post("/api/posts", json={"body": "The middle", "reply_to": root}, headers=bob_h)
        middle_id = middle.json()["id"]
        leaf = await http.post("/api/posts", json={"body": "The leaf", "reply_to": middle_id}, headers=cat_h)
        leaf_id = leaf.json()["id"]
        assert (await http.post(f"/api/users/{ada_login}/follow", headers=cat_h)).status_code == 202

        context = await new_context(browser, site, javascript=javascript)
        ada = await context.new_page()
        await dev_login(ada, ada_login)
        nested = f"#replies .thread-children #post-{leaf_id}"
        await reload_until(ada, f"/posts/{root}", lambda p: p.locator(nested))
        await expect(ada.locator(f"#replies #post-{middle_id}")).to_contain_text("The middle")
        await ada.goto(f"/posts/{leaf_id}")
        chain = ada.locator(".thread-chain article.post")
        await expect(chain).to_have_count(2)
        assert [await c.get_attribute("id") for c in await chain.all()] == [f"post-{root}", f"post-{middle_id}"]
        note = await reload_until(ada, f"/@{cat_login}", lambda p: p.locator(f"#post-{leaf_id} .reply-note"))
        await expect(note).to_have_text(f"Replying to @{bob_login}")  # in lists; the chain says it on its page

        assert (await http.delete(f"/api/posts/{middle_id}", headers=bob_h)).status_code == 202
        gone = f".thread-chain #post-{middle_id}.deleted"
        await reload_until(ada, f"/posts/{leaf_id}", lambda p: p.locator(gone))
        await expect(ada.locator(gone)).to_contain_text("This post was deleted.")
        await expect(ada.locator(f".thread-chain #post-{root}")).to_contain_text(f"Root by {ada_login}")

        async def unread() -> int:
            return (await http.get("/api/notifications/unread", headers=ada_h)).json()["count"]

        await eventually(unread, until=lambda n: n == 1, timeout=60)  # cat's follow (bob's reply went with his post)

    await reload_until(ada, f"/@{ada_login}/followers", lambda p: p.locator(".people", has_text=cat_login))
    await ada.goto(f"/@{cat_login}/following")
    await expect(ada.locator(".people")).to_contain_text(ada_login)
    await ada.goto(f"/@{cat_login}")
    async with ada.expect_navigation():
        await ada.get_by_role("link", name="1 following").click()
    await expect(ada).to_have_url(re.compile(f"/@{cat_login}/following$"))

    await ada.goto("/explore")
    await expect(ada.locator("nav .bell [data-unread]")).to_have_text(re.compile("^1"))
    await ada.goto("/notifications")
    await expect(ada.locator(".notification")).to_have_count(1)
    await expect(ada.locator(".notification")).to_contain_text("followed you")
    await ada.goto("/explore")  # viewed: read
    await expect(ada.locator("nav .bell [data-unread]")).to_be_hidden()
    await context.close()
