"""Editing one's posts and reporting posts and people from the web UI, in Chromium, with and without JavaScript:
the card's Edit leads to a form that saves and comes back to the post, marked "edited" with a link to its history;
Report on a post or a profile files a report its author sees in `GET /api/me/reports`."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Browser, Page, expect

from tests.conftest import eventually
from tests.e2e.conftest import Site
from tests.e2e.test_face import post_via_page
from tests.e2e.test_web_ui import dev_login, new_context, submit, unique

pytestmark = pytest.mark.browser


async def my_reports(page: Page) -> list[dict]:
    """The logged-in person's reports, through the API with the page's session."""
    response = await page.request.get("/api/me/reports")
    assert response.ok, await response.text()
    return list((await response.json())["items"])


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "nojs"])
async def test_edit_a_post_and_read_its_history(browser: Browser, site: Site, javascript: bool) -> None:
    word = unique("edit")
    ctx = await new_context(browser, site, javascript=javascript)
    ada = await ctx.new_page()
    await dev_login(ada, unique("ada-"))
    post_id = await post_via_page(ada, f"First take {word}")

    await ada.goto(f"/posts/{post_id}")
    async with ada.expect_navigation():
        await ada.locator(f"#post-{post_id} a.edit-link").click()
    assert ada.url.endswith(f"/posts/{post_id}/edit")
    body = ada.get_by_label("Your post")
    await expect(body).to_have_value(f"First take {word}")
    await body.fill("x" * 2001)  # refused: said next to the field, the text kept
    if not javascript:
        await submit(ada, "Save edit")
        await expect(ada.locator(".field-error")).to_contain_text("at most 2000")
        await expect(ada.get_by_label("Your post")).to_have_value("x" * 2001)
    else:
        await expect(ada.get_by_role("button", name="Save edit")).to_be_disabled()
    await ada.get_by_label("Your post").fill(f"Second take **{word}**")
    await submit(ada, "Save edit")

    assert ada.url.split("#")[0].endswith(f"/posts/{post_id}")
    await expect(ada.get_by_role("status")).to_contain_text("Your edit is saved.")
    card = ada.locator(f"#post-{post_id}")
    await expect(card.locator(".content strong")).to_have_text(word)
    async with ada.expect_navigation():
        await card.locator("a.edited").click()
    assert ada.url.endswith(f"/posts/{post_id}/history")
    versions = ada.locator("li.version")
    await expect(versions).to_have_count(2)
    await expect(versions.nth(0)).to_contain_text(f"Second take {word}")
    await expect(versions.nth(1)).to_contain_text(f"First take {word}")

    # Someone else's post has no Edit, but a Report.
    bob_ctx = await new_context(browser, site, javascript=javascript)
    bob = await bob_ctx.new_page()
    await dev_login(bob, unique("bob-"))
    await bob.goto(f"/posts/{post_id}")
    await expect(bob.locator(f"#post-{post_id} a.edit-link")).to_have_count(0)
    await expect(bob.locator(f"#post-{post_id} a.report-link")).to_have_count(1)
    assert (await bob.goto(f"/posts/{post_id}/edit")).status == 403  # type: ignore[union-attr]
    await bob_ctx.close()
    await ctx.close()


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "nojs"])
async def test_report_a_post_and_a_profile(browser: Browser, site: Site, javascript: bool) -> None:
    ada_login = unique("ada-")
    ada_ctx = await new_context(browser, site)
    ada = await ada_ctx.new_page()
    await dev_login(ada, ada_login)
    post_id = await post_via_page(ada, f"Buy now {unique('spam')}")
    await ada_ctx.close()

    ctx = await new_context(browser, site, javascript=javascript)
    cat = await ctx.new_page()
    await dev_login(cat, unique("cat-"))
    await cat.goto(f"/posts/{post_id}")
    async with cat.expect_navigation():
        await cat.locator(f"#post-{post_id} a.report-link").click()
    await expect(cat.get_by_role("heading", name="Report this post")).to_be_visible()
    if not javascript:  # no reason chosen: refused, said next to the choices
        await submit(cat, "Send report")
        await expect(cat.locator("#reason-error")).to_be_visible()
    await cat.get_by_label("Spam").check()
    await cat.get_by_label(re.compile("^Anything the moderators")).fill("selling things")
    await submit(cat, "Send report")
    assert cat.url.split("#")[0].endswith(f"/posts/{post_id}")
    await expect(cat.get_by_role("status")).to_contain_text("the moderators will look at your report")

    await cat.goto(f"/@{ada_login}")
    async with cat.expect_navigation():
        await cat.locator(".profile-actions a.report-link").click()
    await expect(cat.get_by_role("heading", name=f"Report @{ada_login}")).to_be_visible()
    await cat.get_by_label("Abuse or harassment").check()
    await submit(cat, "Send report")
    assert cat.url.endswith(f"/@{ada_login}")

    reports = await eventually(lambda: my_reports(cat), until=lambda items: len(items) == 2, timeout=60)
    assert {(r["post_id"], r["reason"], r["comment"], r["status"]) for r in reports} == {
        (post_id, "spam", "selling things", "open"),
        (None, "abuse", "", "open"),
    }
    assert {r["handle"] for r in reports} == {ada_login}
    await ctx.close()
