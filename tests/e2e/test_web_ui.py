"""The web UI in a real browser (Debian's Chromium, headless): the core flows with and without JavaScript.

One scenario, in order: a visitor's home; log in through the local GitHub; post Markdown with a hashtag and see it
rendered; open it and reply; a second person (another browser context) follows the first and sees a new post arrive
live, without a reload; search finds it; the tag trends on Explore and has its page; the profile is edited; logout.
Then a third person with JavaScript disabled does the main flows through plain forms. Every page is saved as a
screenshot at desktop (1280 px) and phone (390 px) widths in artifacts/screenshots/.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Locator, Page, expect

from schemas.events import new_id
from tests.e2e.conftest import Site
from tests.fakes.github import GitHubUser

pytestmark = pytest.mark.browser

WIDTHS = {"desktop": 1280, "phone": 390}
WAIT_MS = 45_000  # consumers rebalancing (another test process joining the groups) pause projections for seconds
expect.set_options(timeout=WAIT_MS)
CROWD = 14
BROKEN_AVATAR = "https://127.0.0.1:9/ada.png"  # nothing listens there: the page falls back to the initial


def unique(prefix: str) -> str:
    return f"{prefix}{new_id()[-8:].lower()}"


async def shoot(page: Page, directory: Path, name: str) -> None:
    """Full-page screenshots at each width; at each, nothing may stick out sideways (long words, code, links)."""
    for label, width in WIDTHS.items():
        await page.set_viewport_size({"width": width, "height": 900})
        await page.evaluate("window.scrollTo(0, 0)")  # the sticky header belongs at the top of a full-page shot
        overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{name} is {overflow}px wider than the {label} viewport"
        await page.screenshot(path=str(directory / f"{name}-{label}.png"), full_page=True)
    await page.set_viewport_size({"width": WIDTHS["desktop"], "height": 900})


async def new_context(browser: Browser, site: Site, *, javascript: bool = True) -> BrowserContext:
    context = await browser.new_context(
        base_url=site.url, viewport={"width": 1280, "height": 900}, java_script_enabled=javascript
    )
    context.set_default_timeout(WAIT_MS)
    return context


async def dev_login(page: Page, handle: str) -> None:
    await page.goto("/login")
    await page.get_by_label("Handle").fill(handle)
    await page.get_by_role("button", name="Log in", exact=True).click()
    await expect(page.get_by_role("button", name="Log out")).to_be_visible()


async def submit(page: Page, button: str) -> None:
    """Click a form's submit button and wait for the page the form leads to."""
    async with page.expect_navigation():
        await page.get_by_role("button", name=button, exact=True).click()


async def crowd_posts(site: Site, body: str, people: int) -> None:
    """`people` new people post `body` through the JSON API (dev login, Bearer tokens)."""
    async with httpx.AsyncClient(base_url=site.url, timeout=10) as http:
        for _ in range(people):
            login = await http.post("/auth/dev-login", json={"login": unique("crowd-")})
            assert login.status_code == 200, login.text
            headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
            http.cookies.clear()
            posted = await http.post("/api/posts", json={"body": body}, headers=headers)
            assert posted.status_code == 202, posted.text


async def reload_until(page: Page, url: str, locate: Callable[[Page], Locator], timeout_s: float = 60) -> Locator:
    """Reload `url` until `locate(page)` finds something (for read models that are eventually consistent)."""
    deadline = time.monotonic() + timeout_s
    while True:
        await page.goto(url)
        found = locate(page)
        if await found.count():
            return found.first
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing matched on {url} within {timeout_s}s")
        await page.wait_for_timeout(500)


async def test_core_flows_with_javascript(browser: Browser, site: Site, screenshots: Path) -> None:
    tag = unique("e2etag")
    word = unique("zebra")
    ada_login, bob_login = unique("ada-"), unique("bob-")
    site.github.next_user = GitHubUser(id=int(time.time() * 1000) % 10**9, login=ada_login, name="Ada Lovelace",
                                       avatar_url=BROKEN_AVATAR, email=f"{ada_login}@example.org")  # fmt: skip

    ada_ctx = await new_context(browser, site)
    ada = await ada_ctx.new_page()
    errors: list[str] = []
    ada.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    failed_loads: list[str] = []  # leaving a page aborts its live feed: that is not a failure
    ada.on("requestfailed", lambda r: failed_loads.append(f"{r.resource_type} {r.url} {r.failure}"))

    # A visitor: everyone's posts and the GitHub login.
    await ada.goto("/")
    await expect(ada.get_by_role("link", name="Log in with GitHub")).to_have_attribute("href", "/auth/github/login")
    await shoot(ada, screenshots, "01-home-visitor")
    await ada.goto("/login")
    await shoot(ada, screenshots, "02-login")

    # Log in through the local GitHub.
    await ada.get_by_role("link", name="Log in with GitHub").click()
    await expect(ada.get_by_role("button", name="Log out")).to_be_visible()
    await expect(ada).to_have_url(re.compile(r"/$"))

    # Post Markdown with a hashtag: live preview, counter, then rendered on the timeline.
    composer = ada.get_by_label("What’s happening?")
    await composer.fill(f"Hello **bold {word}** and `code` #{tag}")
    await expect(ada.locator("[data-preview] strong")).to_have_text(f"bold {word}")
    await expect(ada.locator("[data-counter]")).to_have_text(re.compile(r"^\d+ left$"))
    await submit(ada, "Post")
    first = await reload_until(ada, "/", lambda p: p.locator("article.post", has_text=f"bold {word}"))
    await expect(first.locator(".content strong")).to_have_text(f"bold {word}")
    await expect(first.locator(f'a.hashtag[href="/tags/{tag}"]')).to_be_visible()
    await shoot(ada, screenshots, "03-home")

    # Open it and reply.
    await first.locator("a.permalink").click()
    await expect(ada).to_have_url(re.compile(r"/posts/[0-9A-Z]{26}$"))
    post_url = ada.url
    await ada.get_by_label("Write a reply").fill(f"A reply with _emphasis_ {word}")
    await submit(ada, "Reply")
    await reload_until(ada, post_url, lambda p: p.locator("#replies article.post em", has_text="emphasis"))
    long_word = "Pneumonoultramicroscopicsilicovolcanoconiosis" * 3
    code = "print('" + "a very long line of code " * 8 + "')"
    await ada.get_by_label("Write a reply").fill(f"{long_word} https://example.org/{'path/' * 20}\n\n```\n{code}\n```")
    await submit(ada, "Reply")
    await reload_until(ada, post_url, lambda p: p.locator("#replies pre code", has_text=code))
    await shoot(ada, screenshots, "04-post")

    # A second person follows Ada and sees her next post arrive live.
    bob_ctx = await new_context(browser, site)
    bob = await bob_ctx.new_page()
    await dev_login(bob, bob_login)
    await bob.goto(f"/@{ada_login}")
    async with bob.expect_navigation():
        await bob.get_by_role("button", name=re.compile("^Follow")).click()
    await reload_until(bob, f"/@{ada_login}", lambda p: p.get_by_role("button", name=re.compile("^Unfollow")))
    await expect(bob.locator(".profile span.avatar")).to_have_text("A")  # the broken image was replaced
    await shoot(bob, screenshots, "05-profile")
    await bob.goto("/")
    await bob.evaluate("window.__sameDocument = true")
    await bob.wait_for_timeout(1000)  # let the page's event stream connect before the post is written

    live_text = f"Live from Ada {word}"
    await ada.goto("/")
    await ada.get_by_label("What’s happening?").fill(f"{live_text} #{tag}")
    await submit(ada, "Post")
    await reload_until(ada, "/", lambda p: p.locator("article.post", has_text=live_text))

    banner = bob.locator(".new-posts")
    await expect(banner).to_have_text(re.compile(r"^\d+ new posts?$"))
    await bob.set_viewport_size({"width": 390, "height": 700})
    await bob.screenshot(path=str(screenshots / "05b-live-banner-phone.png"))
    await bob.set_viewport_size({"width": 1280, "height": 900})
    await banner.click()
    await expect(bob.locator("article.post", has_text=live_text)).to_be_visible()
    assert await bob.evaluate("window.__sameDocument === true"), "the page reloaded"

    # Search finds it, with the match highlighted.
    await bob.goto("/explore")
    await bob.get_by_label("Search posts and people").fill(word)
    await submit(bob, "Search")
    await reload_until(bob, bob.url, lambda p: p.locator(".results article", has_text="Live from Ada"))
    await expect(bob.locator(".results mark").first).to_have_text(word)
    await shoot(bob, screenshots, "06-search")
    await bob.goto(f"/explore?q={ada_login}&type=users")
    await expect(bob.locator(".people").get_by_role("link", name=re.compile(f"@{ada_login}"))).to_be_visible()
    await shoot(bob, screenshots, "06b-search-people")

    # The tag trends on Explore (its own posts are by two people now) and has its page.
    await bob.goto("/")
    await bob.get_by_label("What’s happening?").fill(f"Me too #{tag}")
    await submit(bob, "Post")
    # A tag trends when many people use it at once: a crowd joins in through the API. Other tests' tags trend
    # too, so the full list (`Show more trends`) is where it is looked for.
    await crowd_posts(site, f"Joining in #{tag}", CROWD)
    trend = await reload_until(
        bob, "/explore?window=15m&trends=all", lambda p: p.locator(".trending").get_by_role("link", name=f"#{tag}")
    )
    await expect(bob.locator(".trending svg.sparkline").first).to_be_visible()
    await shoot(bob, screenshots, "07-explore")
    await trend.click()
    await expect(bob.get_by_role("heading", name=f"#{tag}")).to_be_visible()
    await expect(bob.locator("article.post", has_text=live_text)).to_be_visible()
    await shoot(bob, screenshots, "08-tag")

    # Ada edits her profile.
    await ada.goto("/settings")
    await shoot(ada, screenshots, "09-settings")
    await ada.get_by_label("Name").fill("Ada L.")
    await ada.get_by_label("Bio").fill(f"Analytical engines and {word}.")
    await submit(ada, "Save")
    await reload_until(ada, f"/@{ada_login}", lambda p: p.get_by_role("heading", name="Ada L."))
    await expect(ada.locator(".profile .bio")).to_have_text(f"Analytical engines and {word}.")
    await shoot(ada, screenshots, "10-own-profile")

    # A page that does not exist, in the site's layout.
    response = await ada.goto("/posts/does-not-exist")
    assert response is not None and response.status == 404
    await expect(ada.get_by_role("navigation", name="Main")).to_be_visible()
    await shoot(ada, screenshots, "11-not-found")
    errors.remove("Failed to load resource: the server responded with a status of 404 (Not Found)")

    # Log out.
    await ada.goto(post_url)
    await ada.get_by_role("button", name="Log out").click()
    await expect(ada.get_by_role("link", name="Log in", exact=True)).to_be_visible()
    # Script errors and CSP refusals would show here. Avatars that cannot load (the broken one, and GitHub's own
    # where there is no network) are expected: the page falls back to the initial.
    assert not [e for e in errors if not e.startswith("Failed to load resource: net::")], errors
    assert not [f for f in failed_loads if not f.startswith("image ") and not f.endswith("net::ERR_ABORTED")]

    # The same thread for a reader whose system is in dark mode.
    dark_ctx = await browser.new_context(base_url=site.url, color_scheme="dark")
    dark = await dark_ctx.new_page()
    await dark.goto(post_url)
    await shoot(dark, screenshots, "13-dark-post")
    await dark_ctx.close()
    await ada_ctx.close()
    await bob_ctx.close()


async def test_core_flows_without_javascript(browser: Browser, site: Site, screenshots: Path) -> None:
    word = unique("nojs")
    carol_login, dave_login = unique("carol-"), unique("dave-")
    dave_ctx = await new_context(browser, site)
    dave = await dave_ctx.new_page()
    await dev_login(dave, dave_login)
    await dave_ctx.close()

    ctx = await new_context(browser, site, javascript=False)
    carol = await ctx.new_page()
    await dev_login(carol, carol_login)

    # A refused post keeps the text and says why, next to the field.
    too_long = "x" * 2001
    await carol.get_by_label("What’s happening?").fill(too_long)
    await submit(carol, "Post")
    await expect(carol.locator(".field-error")).to_contain_text("at most 2000")
    await expect(carol.get_by_label("What’s happening?")).to_have_value(too_long)
    await shoot(carol, screenshots, "12-nojs-error")

    # Post, read, reply.
    await carol.get_by_label("What’s happening?").fill(f"No script needed *{word}*")
    await submit(carol, "Post")
    post = await reload_until(carol, "/", lambda p: p.locator("article.post", has_text="No script needed"))
    await expect(post.locator("em")).to_have_text(word)
    await post.locator("a.permalink").click()
    await carol.get_by_label("Write a reply").fill(f"Replying without script {word}")
    await submit(carol, "Reply")
    thread = carol.url.split("#")[0]
    await reload_until(carol, thread, lambda p: p.locator("#replies article.post", has_text="Replying without script"))

    # Follow, search, log out.
    await carol.goto(f"/@{dave_login}")
    async with carol.expect_navigation():
        await carol.get_by_role("button", name=re.compile("^Follow")).click()
    await reload_until(carol, f"/@{dave_login}", lambda p: p.get_by_role("button", name=re.compile("^Unfollow")))
    await carol.goto("/explore")
    await carol.get_by_label("Search posts and people").fill(word)
    await submit(carol, "Search")
    await reload_until(carol, carol.url, lambda p: p.locator(".results article", has_text="No script needed"))
    await carol.get_by_role("button", name="Log out").click()
    await expect(carol.get_by_role("link", name="Log in", exact=True)).to_be_visible()
    await ctx.close()
