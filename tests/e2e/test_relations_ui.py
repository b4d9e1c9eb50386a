"""Mute and block in Chromium, from the profile's buttons and the settings pages, with and without JavaScript."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Browser, Page, expect

from tests.e2e.conftest import Site
from tests.e2e.test_face import post_via_page
from tests.e2e.test_web_ui import dev_login, new_context, reload_until, unique

pytestmark = pytest.mark.browser


async def press(page: Page, name: str) -> None:
    """Click a profile's or a list's form button (named `name` then the handle) and wait for where it leads."""
    async with page.expect_navigation():
        await page.get_by_role("button", name=re.compile(f"^{name} @")).click()


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "nojs"])
async def test_mute_and_block_from_the_profile_and_undo_them_in_settings(
    browser: Browser, site: Site, javascript: bool
) -> None:
    word = unique("mb")
    ada_ctx, bob_ctx = await new_context(browser, site, javascript=javascript), await new_context(browser, site)
    ada, bob = await ada_ctx.new_page(), await bob_ctx.new_page()
    ada_login, bob_login = unique("ada-"), unique("bob-")
    await dev_login(ada, ada_login)
    await dev_login(bob, bob_login)
    await post_via_page(bob, f"Bob says {word}")
    await ada.goto(f"/@{bob_login}")
    await press(ada, "Follow")
    bobs_post = re.compile(f"Bob says {word}")
    await reload_until(ada, "/", lambda p: p.locator("article.post", has_text=bobs_post))

    # Mute: the profile says so, the home timeline no longer shows Bob, the settings page lists him.
    await ada.goto(f"/@{bob_login}")
    await press(ada, "Mute")
    await expect(ada.get_by_text(f"You muted @{bob_login}")).to_be_visible()
    await expect(ada.get_by_role("button", name=re.compile("^Unmute @"))).to_be_visible()
    await ada.goto("/")
    await expect(ada.locator("article.post", has_text=bobs_post)).to_have_count(0)
    await ada.goto("/settings")
    await ada.get_by_role("link", name="Muted accounts").click()
    await expect(ada.locator(".person", has_text=bob_login)).to_be_visible()
    await press(ada, "Unmute")
    assert ada.url.endswith("/settings/mutes")
    await expect(ada.get_by_text("You mute nobody.")).to_be_visible()
    await reload_until(ada, "/", lambda p: p.locator("article.post", has_text=bobs_post))

    # Block: no follow either way, Bob's posts gone for Ada, Bob refused when he follows her.
    await ada.goto(f"/@{bob_login}")
    await press(ada, "Block")
    await expect(ada.get_by_text(f"You blocked @{bob_login}")).to_be_visible()
    await expect(ada.get_by_role("button", name=re.compile("^Unblock @"))).to_be_visible()
    await expect(ada.get_by_role("button", name=re.compile("^(Follow|Unfollow) @"))).to_have_count(0)
    await expect(ada.locator("article.post", has_text=bobs_post)).to_have_count(0)
    await ada.goto("/")
    await expect(ada.locator("article.post", has_text=bobs_post)).to_have_count(0)
    await bob.goto(f"/@{ada_login}")
    async with bob.expect_navigation():
        await bob.get_by_role("button", name=re.compile("^Follow @")).click()
    await expect(bob.get_by_text("This user blocks you.")).to_be_visible()
    await ada.goto("/settings/blocks")
    await expect(ada.locator(".person", has_text=bob_login)).to_be_visible()
    await press(ada, "Unblock")
    await expect(ada.get_by_text("You block nobody.")).to_be_visible()
    await ada.goto(f"/@{bob_login}")
    await expect(ada.locator("article.post", has_text=bobs_post)).to_be_visible()
    await expect(ada.get_by_role("button", name=re.compile("^Follow @"))).to_be_visible(), "the block unfollowed"
    await ada_ctx.close()
    await bob_ctx.close()
