"""Repost, like, bookmark and quote in Chromium: in place with JavaScript, as forms without it."""

from __future__ import annotations

import httpx
import pytest
from playwright.async_api import Browser, Locator, Page, expect

from tests.e2e.conftest import Site
from tests.e2e.test_face import post_via_page
from tests.e2e.test_web_ui import dev_login, new_context, reload_until, submit, unique

pytestmark = pytest.mark.browser


def control(card: Locator, kind: str) -> Locator:
    return card.locator(f"form[data-interact={kind}] button")


async def card_of(page: Page, post_id: str) -> Locator:
    return page.locator(f"#post-{post_id}")


async def test_like_repost_bookmark_and_quote_with_javascript(browser: Browser, site: Site) -> None:
    word = unique("likes")
    ada_ctx, bob_ctx = await new_context(browser, site), await new_context(browser, site)
    ada, bob = await ada_ctx.new_page(), await bob_ctx.new_page()
    bob_login = unique("bob-")
    await dev_login(ada, unique("ada-"))
    await dev_login(bob, bob_login)
    post_id = await post_via_page(ada, f"Like this {word}")

    await bob.goto(f"/posts/{post_id}")
    url = bob.url
    card = await card_of(bob, post_id)
    for kind in ("like", "repost", "bookmark"):
        await control(card, kind).click()
        await expect(control(card, kind)).to_have_attribute("aria-pressed", "true")  # in place, at once
    await expect(control(card, "like").locator("[data-count]")).to_have_text("1")
    assert bob.url == url, "no navigation: the forms were sent in place"
    # The server has them: a fresh page shows the same, and the profile lists the repost
    liked = await reload_until(
        bob,
        f"/posts/{post_id}",
        lambda p: p.locator(f"#post-{post_id} form[data-interact=like] [data-count]", has_text="1"),
    )
    await expect(liked).to_be_visible()
    repost = await reload_until(bob, f"/@{bob_login}", lambda p: p.locator(f"#post-{post_id} .repost-note"))
    await expect(repost).to_contain_text("reposted")
    await reload_until(bob, "/bookmarks", lambda p: p.locator(f"#post-{post_id}"))
    # Unlike in place
    await bob.goto(f"/posts/{post_id}")
    card = await card_of(bob, post_id)
    await control(card, "like").click()
    await expect(control(card, "like")).to_have_attribute("aria-pressed", "false")
    await expect(control(card, "like").locator("[data-count]")).to_have_text("0")

    # Quote: the composer opens with the post embedded; the quote shows it as a card
    await card.get_by_role("link", name="Quote this post").click()
    await expect(bob.locator("form[data-composer] .quoted")).to_contain_text(f"Like this {word}")
    await bob.get_by_label("What’s happening?").fill(f"Quoting {word}")
    await submit(bob, "Post")
    quote = await reload_until(bob, "/", lambda p: p.locator("article.post", has_text=f"Quoting {word}"))
    await expect(quote.locator(".quoted")).to_contain_text(f"Like this {word}")
    await ada_ctx.close()
    await bob_ctx.close()


async def test_like_repost_bookmark_and_quote_without_javascript(browser: Browser, site: Site) -> None:
    word = unique("nojs-likes")
    ada_ctx = await new_context(browser, site)
    ada = await ada_ctx.new_page()
    await dev_login(ada, unique("ada-"))
    post_id = await post_via_page(ada, f"Forms only {word}")
    ctx = await new_context(browser, site, javascript=False)
    carol = await ctx.new_page()
    await dev_login(carol, unique("carol-"))
    await carol.goto(f"/posts/{post_id}")
    for kind in ("like", "repost", "bookmark"):
        card = await card_of(carol, post_id)
        async with carol.expect_navigation():
            await control(card, kind).click()
        assert carol.url.split("#")[0].endswith(f"/posts/{post_id}"), "back to the same page"
        await expect(control(await card_of(carol, post_id), kind)).to_have_attribute("aria-pressed", "true")
    await expect(control(await card_of(carol, post_id), "like").locator("[data-count]")).to_have_text("1")
    await carol.goto("/bookmarks")
    await expect(carol.locator(f"#post-{post_id}")).to_be_visible()
    async with carol.expect_navigation():
        await control(await card_of(carol, post_id), "bookmark").click()
    assert carol.url.split("#")[0].endswith("/bookmarks")
    await expect(carol.locator(f"#post-{post_id}")).to_have_count(0)

    # Quote: a link to the composer with the post embedded, a plain form post
    await carol.goto(f"/posts/{post_id}")
    await (await card_of(carol, post_id)).get_by_role("link", name="Quote this post").click()
    await expect(carol.locator("form[data-composer] .quoted")).to_contain_text(f"Forms only {word}")
    quoting = f"Quoting without scripts {word}"
    await carol.get_by_label("What’s happening?").fill(quoting)
    await submit(carol, "Post")
    quote = await reload_until(carol, "/", lambda p: p.locator("article.post", has_text=quoting))
    await expect(quote.locator(".quoted")).to_contain_text(f"Forms only {word}")
    await ctx.close()
    await ada_ctx.close()


async def test_an_open_post_page_shows_others_likes_and_reposts_live(browser: Browser, site: Site) -> None:
    ada_ctx = await new_context(browser, site)
    ada = await ada_ctx.new_page()
    await dev_login(ada, unique("ada-"))
    post_id = await post_via_page(ada, f"Watch the counts {unique('live')}")
    await ada.goto(f"/posts/{post_id}")
    await ada.evaluate("window.notReloaded = true")
    card = await card_of(ada, post_id)
    async with httpx.AsyncClient(base_url=site.url, timeout=10) as http:
        login = await http.post("/auth/dev-login", json={"login": unique("bob-")})
        assert login.status_code == 200, login.text
        bob = {"Authorization": f"Bearer {login.json()['access_token']}"}
        http.cookies.clear()
        for kind in ("like", "repost"):
            assert (await http.post(f"/api/posts/{post_id}/{kind}", headers=bob)).status_code == 202
        await expect(control(card, "like").locator("[data-count]")).to_have_text("1")
        await expect(control(card, "repost").locator("[data-count]")).to_have_text("1")
        assert (await http.delete(f"/api/posts/{post_id}/like", headers=bob)).status_code == 202
        await expect(control(card, "like").locator("[data-count]")).to_have_text("0")
    await expect(control(card, "repost").locator("[data-count]")).to_have_text("1")
    assert await ada.evaluate("window.notReloaded === true"), "the counts changed in place, not by a reload"
    await ada_ctx.close()
