"""The web UI's face and rough edges, in Chromium: axe-core finds nothing on any page in light and dark, every
control is a 44x44 px target on a phone, the phone's composer stays out of the way and keeps its counter and Post
button in view, status messages follow form actions, Delete asks first (a page without JavaScript), a delete
reaches other open tabs live, and shared links carry Open Graph tags with absolute URLs.

Each page is saved at 1280x800 and 390x844 in both colour schemes under artifacts/screenshots/face/ (first screen).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Literal

import pytest
from playwright.async_api import Browser, BrowserContext, Page, ViewportSize, expect

from schemas.events import new_id
from tests.e2e.conftest import Site
from tests.e2e.test_web_ui import dev_login, new_context, reload_until, submit, unique

pytestmark = pytest.mark.browser

VIEWPORTS: dict[str, ViewportSize] = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
SCHEMES: tuple[Literal["light"], Literal["dark"]] = ("light", "dark")
TAP = 44

# Every visible control a finger may hit; links inside a sentence are exempt (WCAG 2.5.8's inline exception),
# a radio or checkbox is hit through its label.
TAP_TARGETS = """() => {
  const controls = document.querySelectorAll('a[href], button, input:not([type=hidden]), textarea, select, summary');
  const small = [];
  for (const el of controls) {
    const style = getComputedStyle(el);
    if (style.visibility === 'hidden' || el.closest('[hidden], .visually-hidden')) continue;
    let box = el.getBoundingClientRect();
    if (box.width === 0 || box.height === 0) continue;
    const parent = el.parentElement;
    const inSentence = style.display === 'inline' && [...parent.childNodes].some(
      (n) => n.nodeType === Node.TEXT_NODE && n.textContent.trim() !== '');
    if (inSentence || el.closest('.content, .bio')) continue;
    if (el.matches('input[type=radio], input[type=checkbox]') && el.closest('label')) {
      box = el.closest('label').getBoundingClientRect();
    }
    if (box.width < 43.5 || box.height < 43.5) {
      const text = (el.textContent || el.value || '').trim().slice(0, 30);
      const size = `${Math.round(box.width)}x${Math.round(box.height)}`;
      small.push(`${el.tagName.toLowerCase()}.${el.className} "${text}" ${size}`);
    }
  }
  return small;
}"""


async def axe_violations(page: Page, axe: str) -> list[str]:
    """Every axe-core violation on the page as it is now, of any impact (all rules axe runs by default)."""
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        await page.evaluate(axe)  # not a <script> tag: the page's CSP refuses inline scripts, as it should
    result: dict[str, Any] = await page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:5]}"
        for v in result["violations"]
    ]


async def check_page(page: Page, axe: str, url: str, name: str, shots: Path | None) -> list[str]:
    """axe in both colour schemes at both sizes (and the first screen saved); the phone's small targets."""
    problems: list[str] = []
    for scheme in SCHEMES:
        await page.emulate_media(color_scheme=scheme)
        for label, viewport in VIEWPORTS.items():
            await page.set_viewport_size(viewport)
            await page.goto(url)
            problems += [f"{name} {scheme} {label}: {v}" for v in await axe_violations(page, axe)]
            if label == "phone" and scheme == "light":
                small = await page.evaluate(TAP_TARGETS)
                problems += [f"{name} phone: a target smaller than {TAP}px: {s}" for s in small]
            if shots is not None:
                await page.screenshot(path=str(shots / f"{name}-{label}-{scheme}.png"))
    await page.emulate_media(color_scheme="light")
    await page.set_viewport_size(VIEWPORTS["desktop"])
    return problems


@pytest.fixture(scope="module")
def face_shots(screenshots: Path) -> Path:
    path = screenshots / "face"
    path.mkdir(parents=True, exist_ok=True)
    return path


async def post_via_page(page: Page, text: str, shown: str = "") -> str:
    """Post from the home composer; the new post's id (found by `shown`, the text as rendered, or `text`)."""
    await page.goto("/")
    await page.get_by_label("What’s happening?").fill(text)
    await submit(page, "Post")
    card = await reload_until(page, "/", lambda p: p.locator("article.post", has_text=shown or text))
    return (await card.get_attribute("id") or "").removeprefix("post-")


async def test_every_page_passes_axe_in_both_schemes_with_44px_targets_on_phones(
    browser: Browser, site: Site, axe: str, face_shots: Path
) -> None:
    word = unique("face")
    ada_login, bob_login = unique("ada-"), unique("bob-")
    bob_ctx = await new_context(browser, site)
    bob = await bob_ctx.new_page()
    await dev_login(bob, bob_login)
    ada_ctx = await new_context(browser, site)
    ada = await ada_ctx.new_page()
    await dev_login(ada, ada_login)
    # Links of every kind in running text: a hashtag, a mention, a URL; code; a reply below it.
    post_id = await post_via_page(
        ada,
        f"Hello {word} #{word} with @{bob_login}, see https://example.org/chirp and `code` **bold**",
        f"Hello {word}",
    )
    await ada.goto(f"/posts/{post_id}")
    await ada.get_by_label("Write a reply").fill(f"A reply to {word}, with a [link](https://example.org) in it")
    await submit(ada, "Reply")
    reply = await reload_until(ada, f"/posts/{post_id}", lambda p: p.locator("#replies article.post"))
    reply_id = (await reply.get_attribute("id") or "").removeprefix("post-")
    await reload_until(ada, f"/explore?q={word}", lambda p: p.locator(".results article"))
    edited_id = await post_via_page(ada, f"Before the edit {word}")
    await ada.goto(f"/posts/{edited_id}/edit")
    await ada.get_by_label("Your post").fill(f"After the edit {word}")
    await submit(ada, "Save edit")

    # Ada mutes Bob (private: his notifications still show her mention): her settings page lists him.
    await ada.goto(f"/@{bob_login}")
    async with ada.expect_navigation():
        await ada.get_by_role("button", name=re.compile("^Mute @")).click()
    await expect(ada.get_by_role("button", name=re.compile("^Unmute @"))).to_be_visible()

    # Someone to suggest: cat follows ada, who follows bob, so cat's home says "Who to follow: bob".
    cat_ctx = await new_context(browser, site)
    cat = await cat_ctx.new_page()
    await dev_login(cat, unique("cat-"))
    for page, handle in ((cat, ada_login), (ada, bob_login)):
        await page.goto(f"/@{handle}")
        async with page.expect_navigation():
            await page.get_by_role("button", name=re.compile("^Follow")).click()
    await reload_until(cat, "/", lambda p: p.locator(".suggestions .suggestion"))

    visitor_ctx = await new_context(browser, site)
    visitor = await visitor_ctx.new_page()
    pages: list[tuple[Page, str, str, bool]] = [
        (cat, "/", "home-suggestions", True),
        (visitor, "/", "home-visitor", True),
        (visitor, "/login", "login", False),
        (ada, "/", "home", True),
        (ada, "/?feed=all", "home-everyone", False),
        (ada, f"/posts/{post_id}", "post", True),
        (ada, f"/posts/{reply_id}", "thread", False),
        (visitor, f"/posts/{post_id}", "post-visitor", False),
        (ada, f"/@{ada_login}", "profile", True),
        (bob, f"/@{ada_login}", "profile-other", False),
        (visitor, "/explore", "explore-start", False),
        (ada, f"/explore?q={word}", "explore", True),
        (ada, f"/explore?q={ada_login}&type=users", "explore-people", False),
        (ada, f"/tags/{word}", "tag", False),
        (ada, "/settings", "settings", True),
        (ada, "/settings/mutes", "settings-mutes", False),
        (ada, "/settings/blocks", "settings-blocks", False),
        (ada, f"/@{bob_login}", "profile-muted", False),
        (bob, "/notifications", "notifications", True),
        (bob, f"/@{ada_login}/followers", "followers", False),
        (visitor, f"/@{ada_login}/following", "following-visitor", False),
        (ada, "/bookmarks", "bookmarks", False),
        (ada, f"/?quote_of={reply_id}", "quote-composer", False),
        (ada, f"/posts/{post_id}/delete", "confirm-delete", False),
        (ada, f"/posts/{post_id}/edit", "edit-post", False),
        (visitor, f"/posts/{edited_id}/history", "edit-history", False),
        (ada, f"/posts/{edited_id}", "post-edited", False),
        (bob, f"/posts/{post_id}/report", "report-post", False),
        (bob, f"/@{ada_login}/report", "report-profile", False),
        (ada, "/posts/no-such-post", "not-found", True),
    ]
    problems: list[str] = []
    for page, url, name, shoot in pages:
        problems += await check_page(page, axe, url, name, face_shots if shoot else None)

    # The phone's composer is one line until used: the first posts show on the first screen.
    await ada.set_viewport_size(VIEWPORTS["phone"])
    await ada.goto("/")
    composer = ada.get_by_label("What’s happening?")
    if (await composer.bounding_box() or {"height": 999})["height"] > 48:
        problems.append("the phone's composer is not collapsed")
    first_post = await ada.locator("article.post").first.bounding_box()
    if first_post is None or first_post["y"] > VIEWPORTS["phone"]["height"] - 100:
        problems.append(f"the first post is not on the phone's first screen: {first_post}")
    await composer.focus()
    if (await composer.bounding_box() or {"height": 0})["height"] < 60:
        problems.append("the phone's composer does not open when focused")
    await ada.set_viewport_size(VIEWPORTS["desktop"])
    await ada_ctx.close()
    await bob_ctx.close()
    await cat_ctx.close()
    await visitor_ctx.close()
    assert not problems, "\n".join(problems)


async def in_view(page: Page, selector: str) -> bool:
    box = await page.locator(selector).bounding_box()
    height = await page.evaluate("window.innerHeight")
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= height


async def test_an_over_long_post_keeps_the_counter_and_post_button_in_view(
    browser: Browser, site: Site, face_shots: Path
) -> None:
    ctx = await new_context(browser, site)
    page = await ctx.new_page()
    await dev_login(page, unique("long-"))
    await page.set_viewport_size(VIEWPORTS["phone"])
    await page.goto("/")
    long_post = "\n\n".join(f"Paragraph {i} " + "word " * 40 for i in range(12))
    await page.get_by_label("What’s happening?").fill(long_post)
    await expect(page.locator("[data-preview]")).to_contain_text("Paragraph 11")
    await expect(page.locator("[data-counter]")).to_have_text(re.compile(r"^\d+ too many$"))
    await expect(page.get_by_role("button", name="Post", exact=True)).to_be_disabled()
    for selector in ("[data-counter]", ".composer button[type=submit]"):
        assert await in_view(page, selector), f"{selector} is off-screen under the preview"
    await page.locator("[data-preview]").scroll_into_view_if_needed()
    await page.evaluate("document.querySelector('[data-preview]').scrollTop = 1e6")
    for selector in ("[data-counter]", ".composer button[type=submit]"):
        assert await in_view(page, selector), f"{selector} is off-screen at the end of the preview"
    await page.screenshot(path=str(face_shots / "composer-over-long-phone-light.png"))
    await ctx.close()


async def test_status_messages_after_save_and_delete_and_a_confirm_page_without_javascript(
    browser: Browser, site: Site, face_shots: Path
) -> None:
    login = unique("flash-")
    ctx = await new_context(browser, site, javascript=False)
    page = await ctx.new_page()
    await dev_login(page, login)
    await expect(page.get_by_role("status")).to_have_text(f"Logged in as @{login}.")

    await page.goto("/settings")
    await page.get_by_label("Bio").fill("Testing the flash.")
    await submit(page, "Save")
    await expect(page).to_have_url(re.compile(f"/@{login}$"))
    await expect(page.get_by_role("status")).to_have_text("Profile saved.")
    await page.screenshot(path=str(face_shots / "flash-saved-desktop-light.png"))
    await page.reload()
    await expect(page.get_by_role("status")).to_have_count(0)  # shown once

    text = f"Delete me {unique('gone')}"
    post_id = await post_via_page(page, text)
    await page.goto(f"/@{login}")
    card = page.locator(f"#post-{post_id}")
    await card.get_by_role("link", name="Delete this post").click()
    await expect(page).to_have_url(re.compile(f"/posts/{post_id}/delete$"))
    await expect(page.get_by_role("heading", name="Delete this post?")).to_be_visible()
    await expect(page.locator(f"#post-{post_id}")).to_contain_text(text)
    await page.set_viewport_size(VIEWPORTS["phone"])
    await page.screenshot(path=str(face_shots / "confirm-delete-nojs-phone-light.png"))
    await page.get_by_role("link", name="Cancel").click()
    await expect(page).to_have_url(re.compile(f"/@{login}$"))
    await expect(card).to_be_visible()  # cancelling deletes nothing

    await card.get_by_role("link", name="Delete this post").click()
    await submit(page, "Delete post")
    await expect(page).to_have_url(re.compile(f"/@{login}$"))  # back where the viewer was
    await expect(page.get_by_role("status")).to_have_text("Post deleted.")
    await expect(page.locator(f"#post-{post_id}")).to_have_count(0)
    await ctx.close()


async def test_a_delete_removes_the_card_in_other_open_tabs(browser: Browser, site: Site) -> None:
    ada_login = unique("ada-")
    ada_ctx, bob_ctx = await new_context(browser, site), await new_context(browser, site)
    ada, bob = await ada_ctx.new_page(), await bob_ctx.new_page()
    await dev_login(ada, ada_login)
    await dev_login(bob, unique("bob-"))
    everyone = await bob_ctx.new_page()  # open before the post: it offers it in the "new posts" pill
    await everyone.goto("/?feed=all")
    await everyone.wait_for_timeout(1000)  # let its event stream connect
    text = f"Soon gone {unique('live')}"
    post_id = await post_via_page(ada, text)
    pill = everyone.locator(".new-posts")
    await expect(pill).to_have_text(re.compile(r"^\d+ new posts?$"))
    await reload_until(bob, f"/@{ada_login}", lambda p: p.locator(f"#post-{post_id}"))
    thread = await bob_ctx.new_page()
    await thread.goto(f"/posts/{post_id}")
    await bob.evaluate("window.__sameDocument = true")
    await bob.wait_for_timeout(1000)  # let the pages' event streams connect before the delete
    pending = int((await pill.text_content() or "0").split()[0])

    await ada.goto(f"/posts/{post_id}")
    ada.once("dialog", lambda dialog: dialog.accept())  # scripts ask in a dialog instead of the confirm page
    started = time.monotonic()
    async with ada.expect_navigation():
        await ada.get_by_role("link", name="Delete this post").click()
    await expect(bob.locator(f"#post-{post_id}")).to_have_count(0)
    print(f"the card left the other tab {time.monotonic() - started:.2f}s after the click on Delete")
    await expect(ada).to_have_url(re.compile(r"/$"))  # not the deleted post's page
    await expect(ada.get_by_role("status")).to_have_text("Post deleted.")
    assert await bob.evaluate("window.__sameDocument === true"), "the page reloaded"
    await expect(thread.locator(f"#post-{post_id}")).to_contain_text("This post was deleted.")
    if pending == 1:  # the pill no longer offers a post that would insert nothing
        await expect(pill).to_be_hidden()
    else:
        await expect(pill).to_have_text(f"{pending - 1} new post" + ("s" if pending > 2 else ""))
    await ada_ctx.close()
    await bob_ctx.close()


async def test_post_and_profile_pages_carry_link_previews(browser: Browser, site: Site) -> None:
    ctx: BrowserContext = await new_context(browser, site)
    page = await ctx.new_page()
    login = unique("og-")
    await dev_login(page, login)
    post_id = await post_via_page(page, f"Preview me {new_id()}")

    async def meta(name: str) -> str:
        attr = "property" if name.startswith(("og:", "profile:")) else "name"
        return await page.locator(f'meta[{attr}="{name}"]').get_attribute("content") or ""

    for path, kind in ((f"/posts/{post_id}", "article"), (f"/@{login}", "profile")):
        await page.goto(path)
        assert await meta("og:url") == f"{site.url}{path}"
        assert await meta("og:type") == kind
        assert await meta("twitter:card") == "summary_large_image"
        assert await meta("og:title") and await meta("twitter:title")
        assert ("Preview me" if kind == "article" else f"@{login}") in await meta("og:description")
        image = await meta("og:image")
        assert image.startswith(f"{site.url}/static/og-image.png") and await meta("twitter:image") == image
        fetched = await page.request.get(image)
        assert fetched.status == 200 and fetched.headers["content-type"] == "image/png"
        assert (await fetched.body())[:8] == b"\x89PNG\r\n\x1a\n"
    icon = await page.locator('link[rel="icon"]').get_attribute("href")
    assert icon and (await page.request.get(icon)).headers["content-type"].startswith("image/svg+xml")
    await ctx.close()
