"""The settings page's "Download my data" and "Delete account" (typed confirmation), without JavaScript."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import eventually
from tests.integration.helpers import unique_handle
from tests.integration.test_pages import HTML, assert_accessible, browser_login, post_form, tags

pytestmark = pytest.mark.usefixtures("pipeline")


async def test_settings_offer_the_export_and_delete_the_account_after_the_typed_handle(
    client: httpx.AsyncClient,
) -> None:
    handle = unique_handle("leaving")
    await browser_login(client, handle)
    page = await client.get("/settings", headers=HTML)
    root = assert_accessible(page.text)
    assert "/api/me/export" in {a.get("href") for a in tags(root, "a")}
    assert "/settings/delete" in {f.get("action") for f in tags(root, "form")}

    exported = await client.get("/api/me/export")
    assert exported.status_code == 200 and exported.json()["profile"]["user_id"]

    wrong = await post_form(client, "/settings/delete", {"confirm": "not-me"})
    assert wrong.status_code == 422
    wrong_root = assert_accessible(wrong.text)
    confirm = next(i for i in tags(wrong_root, "input") if i.get("name") == "confirm")
    assert confirm.get("aria-invalid") == "true" and "Type your handle" in wrong.text
    assert (await client.get("/api/me")).status_code == 200, "a mismatch deletes nothing"

    deleted = await post_form(client, "/settings/delete", {"confirm": handle})
    assert deleted.status_code == 303 and deleted.headers["location"] == "/"
    home = await client.get("/", headers=HTML)
    assert "Your account is deleted." in home.text
    assert not client.cookies.get("chirp_access"), "logged out"
    await eventually(lambda: client.get(f"/@{handle}", headers=HTML), until=lambda r: r.status_code == 404)
