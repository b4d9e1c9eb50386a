"""The pages through the in-process gateway, as a browser without JavaScript uses them.

Markup is checked with an HTML5 parser (html5lib): landmarks (header, nav, main), a label for every input, alt text
on images; every response carries the security headers. Forms post with the CSRF token and answer 303 back, or
re-render with the error next to the field and the input kept.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any
from xml.etree.ElementTree import Element

import html5lib
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request

from chirp.settings import Settings
from gateway.app import create_app
from gateway.errors import ApiError, NotFound, TooManyRequests
from gateway.pages.security import CSP
from schemas.events import new_id
from tests.conftest import eventually
from tests.integration.helpers import unique_handle

NS = "{http://www.w3.org/1999/xhtml}"
HTML = {"Accept": "text/html,application/xhtml+xml"}
SECURITY = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "strict-origin-when-cross-origin",
    "x-frame-options": "DENY",
}


def parse(text: str) -> Element:
    return html5lib.parse(text, namespaceHTMLElements=True)


def tags(root: Element, name: str) -> list[Element]:
    return list(root.iter(f"{NS}{name}"))


def assert_secure(response: httpx.Response) -> None:
    for name, value in SECURITY.items():
        assert response.headers.get(name) == value, (name, response.headers.get(name))


def assert_accessible(text: str) -> Element:
    """Landmarks, one h1, labelled inputs, alt on images, no inline script or style."""
    root = parse(text)
    body = next(iter(tags(root, "body")))
    assert [c.tag for c in body if c.tag in (f"{NS}header", f"{NS}main", f"{NS}footer")] == [
        f"{NS}header",
        f"{NS}main",
        f"{NS}footer",
    ]
    assert tags(next(iter(tags(body, "header"))), "nav"), "the header holds the main navigation"
    assert len(tags(root, "h1")) == 1
    labels = {label.get("for") for label in tags(root, "label")}
    wrapped = {id(i) for label in tags(root, "label") for i in label.iter() if i.tag in (f"{NS}input", f"{NS}textarea")}
    for field in [*tags(root, "input"), *tags(root, "textarea"), *tags(root, "select")]:
        if field.get("type") in ("hidden", "submit", "button"):
            continue
        assert field.get("id") in labels or id(field) in wrapped or field.get("aria-label"), field.attrib
    for img in tags(root, "img"):
        assert img.get("alt") is not None, img.attrib
    for script in tags(root, "script"):
        assert script.get("src") and not (script.text or "").strip(), "no inline scripts (CSP)"
    assert not tags(root, "style")
    assert not [e for e in root.iter() if e.get("style") is not None], "no style attributes (CSP)"
    return root


def csrf(client: httpx.AsyncClient) -> str:
    return client.cookies.get("chirp_csrf") or ""


async def browser_login(client: httpx.AsyncClient, handle: str) -> None:
    """Log in through the dev login form, as a browser without JavaScript does."""
    response = await client.post("/login", data={"login": handle, "next": "/"}, headers=HTML)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/"
    assert client.cookies.get("chirp_access") and csrf(client)


async def post_form(client: httpx.AsyncClient, path: str, data: dict[str, str]) -> httpx.Response:
    return await client.post(path, data={"csrf_token": csrf(client), **data}, headers=HTML)


async def test_a_visitor_sees_everyones_posts_and_the_github_login(client: httpx.AsyncClient) -> None:
    response = await client.get("/", headers=HTML)
    assert response.status_code == 200
    assert_secure(response)
    root = assert_accessible(response.text)
    links = {a.get("href") for a in tags(root, "a")}
    assert "/auth/github/login" in links and "/login" in links
    assert not tags(root, "textarea"), "no composer for visitors"


@pytest.mark.parametrize("path", ["/login", "/explore", "/explore?q=hello", "/explore?q=hello&type=users"])
async def test_public_pages_are_accessible(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path, headers=HTML)
    assert response.status_code == 200, response.text
    assert_secure(response)
    assert_accessible(response.text)


async def test_static_files_and_json_carry_security_headers(client: httpx.AsyncClient) -> None:
    for path in ("/static/app.css", "/static/app.js", "/healthz"):
        response = await client.get(path)
        assert response.status_code == 200, path
        assert_secure(response)


async def test_not_found_is_a_page_for_browsers_and_json_for_the_api(client: httpx.AsyncClient) -> None:
    for path in ("/no/such/page", f"/posts/{new_id()}", f"/@{unique_handle('ghost')}"):
        page = await client.get(path, headers=HTML)
        assert page.status_code == 404 and page.headers["content-type"].startswith("text/html"), path
        assert_secure(page)
        assert "Page not found" in assert_accessible(page.text).findtext(f".//{NS}h1", "")
    api = await client.get(f"/api/posts/{new_id()}", headers=HTML)
    assert api.status_code == 404 and api.json()["error"]["code"] == "not_found"
    plain = await client.get("/no/such/page")
    assert plain.status_code == 404 and plain.json()["error"]["code"] == "not_found"


def _request(app: Starlette, path: str) -> Request:
    scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(), "query_string": b"",
             "headers": [(b"accept", b"text/html")], "app": app, "root_path": ""}  # fmt: skip
    return Request(scope)


async def test_rate_limited_and_crashed_pages_keep_the_layout(app: Starlette) -> None:
    api_error, server_error = app.exception_handlers[ApiError], app.exception_handlers[Exception]
    limited = await api_error(_request(app, "/compose"), TooManyRequests("Slow down.", headers={"Retry-After": "7"}))
    assert limited.status_code == 429 and limited.headers["retry-after"] == "7"
    assert "Slow down" in assert_accessible(bytes(limited.body).decode()).findtext(f".//{NS}h1", "")
    crashed = await server_error(_request(app, "/"), RuntimeError("boom"))
    assert crashed.status_code == 500 and crashed.headers["content-security-policy"] == CSP
    assert_accessible(bytes(crashed.body).decode())
    api = await api_error(_request(app, "/api/posts"), NotFound("No such post."))
    assert api.status_code == 404 and api.headers["content-type"] == "application/json"


async def test_forms_without_the_csrf_token_are_refused(client: httpx.AsyncClient) -> None:
    await browser_login(client, unique_handle("csrf"))
    missing = await client.post("/compose", data={"body": "hi"}, headers=HTML)
    assert missing.status_code == 403 and "text/html" in missing.headers["content-type"]
    foreign = await client.post(
        "/compose", data={"body": "hi", "csrf_token": csrf(client)}, headers={**HTML, "Origin": "https://evil.test"}
    )
    assert foreign.status_code == 403


async def test_the_logged_in_pages_and_forms_work_without_javascript(client: httpx.AsyncClient, pipeline: Any) -> None:
    handle, other = unique_handle("nojs"), unique_handle("other")
    await browser_login(client, other)
    other_cookies = dict(client.cookies)
    client.cookies.clear()
    await browser_login(client, handle)

    home = await client.get("/", headers=HTML)
    root = assert_accessible(home.text)
    assert tags(root, "textarea")[0].get("name") == "body"
    assert {i.get("name") for i in tags(root, "input") if i.get("type") == "hidden"} >= {"csrf_token", "next"}

    # A refused post: 422, the error next to the field, the text kept.
    refused = await post_form(client, "/compose", {"body": "x" * 2001, "next": "/"})
    assert refused.status_code == 422
    textarea = tags(assert_accessible(refused.text), "textarea")[0]
    assert textarea.text == "x" * 2001 and textarea.get("aria-invalid") == "true"
    assert "at most 2000" in refused.text

    # Post, then it is on the home page the browser lands on.
    word = f"w{new_id().lower()}"
    posted = await post_form(client, "/compose", {"body": f"Hello **{word}** #nojs", "next": "/"})
    assert posted.status_code == 303 and posted.headers["location"] == "/"

    async def home_page() -> str:  # visible at once once the consumers run; they may still be starting
        return (await client.get("/", headers=HTML)).text

    landed = await eventually(home_page, until=lambda text: f"<strong>{word}</strong>" in text, timeout=60)
    match = re.findall(r'id="post-([0-9A-Z]{26})"', landed)
    post_id = next(pid for pid in match if word in landed.split(f'id="post-{pid}"')[1][:2000])

    # Its page, a reply, and a Delete for its author only, which asks first on a page whose form deletes.
    page = await client.get(f"/posts/{post_id}", headers=HTML)
    assert page.status_code == 200
    root = assert_accessible(page.text)
    assert f"/posts/{post_id}/delete" in {a.get("href") for a in tags(root, "a")}
    confirm = await client.get(f"/posts/{post_id}/delete", headers=HTML)
    assert confirm.status_code == 200 and "Delete this post?" in confirm.text
    assert f"/posts/{post_id}/delete" in {f.get("action") for f in tags(assert_accessible(confirm.text), "form")}
    replied = await post_form(
        client, "/compose", {"body": f"reply {word}", "reply_to": post_id, "next": f"/posts/{post_id}"}
    )
    assert replied.status_code == 303 and replied.headers["location"].startswith(f"/posts/{post_id}#post-")

    async def post_page() -> str:
        return (await client.get(f"/posts/{post_id}", headers=HTML)).text

    await eventually(post_page, until=lambda text: f"reply {word}" in text)

    # Follow someone (once their sign-up reached the users model): the profile shows Unfollow once the browser
    # lands back on it.
    await eventually(lambda: client.get(f"/@{other}", headers=HTML), until=lambda r: r.status_code == 200)
    followed = await post_form(client, f"/@{other}/follow", {"next": f"/@{other}"})
    assert followed.status_code == 303
    profile = await client.get(f"/@{other}", headers=HTML)
    assert_accessible(profile.text)
    assert f'action="/@{other}/unfollow"' in profile.text

    # Settings: a refused name keeps the input and says why; a good edit shows on the profile.
    settings_page = await client.get("/settings", headers=HTML)
    assert_accessible(settings_page.text)
    too_long = "n" * 51
    bad = await post_form(client, "/settings", {"display_name": too_long, "bio": "kept bio"})
    assert bad.status_code == 422
    bad_root = assert_accessible(bad.text)
    name_input = next(i for i in tags(bad_root, "input") if i.get("name") == "display_name")
    assert name_input.get("value") == too_long and name_input.get("aria-invalid") == "true"
    assert "kept bio" in bad.text
    good = await post_form(client, "/settings", {"display_name": "No Script", "bio": f"bio {word}"})
    assert good.status_code == 303 and good.headers["location"] == f"/@{handle}"
    assert f"bio {word}" in (await client.get(f"/@{handle}", headers=HTML)).text

    # Search finds the post, highlighted; the tag page lists it.
    async def found() -> str:
        return (await client.get(f"/explore?q={word}", headers=HTML)).text

    results = await eventually(found, until=lambda text: f"<mark>{word}</mark>" in text, timeout=60)
    assert_accessible(results)
    tag_page = await client.get("/tags/nojs", headers=HTML)
    assert tag_page.status_code == 200 and word in tag_page.text
    assert_accessible(tag_page.text)

    # The author deletes the post; someone else cannot.
    client.cookies.clear()
    client.cookies.update(other_cookies)
    refused_delete = await post_form(client, f"/posts/{post_id}/delete", {})
    assert refused_delete.status_code == 403
    client.cookies.clear()
    await browser_login(client, handle)
    deleted = await post_form(client, f"/posts/{post_id}/delete", {"next": f"/posts/{post_id}"})
    assert deleted.status_code == 303 and deleted.headers["location"] == "/"  # not back to the deleted post
    assert "Post deleted." in (await client.get("/", headers=HTML)).text

    async def status() -> int:
        return (await client.get(f"/posts/{post_id}", headers=HTML)).status_code

    await eventually(status, until=lambda code: code == 404)

    # Log out: the session ends, the header offers the login again.
    out = await post_form(client, "/logout", {})
    assert out.status_code == 303
    assert "chirp_access" not in client.cookies
    assert 'href="/login"' in (await client.get("/", headers=HTML)).text


async def test_preview_renders_markdown_for_the_logged_in_composer(client: httpx.AsyncClient) -> None:
    await browser_login(client, unique_handle("preview"))
    ok = await client.post("/api/preview", json={"body": "**hi** #tag"}, headers={"X-CSRF-Token": csrf(client)})
    assert ok.status_code == 200
    assert ok.json()["html"] == '<p><strong>hi</strong> <a href="/tags/tag" class="hashtag">#tag</a></p>\n'
    refused = await client.post("/api/preview", json={"body": "hi"})
    assert refused.status_code == 403


async def test_login_errors_show_next_to_the_field(client: httpx.AsyncClient) -> None:
    response = await client.post("/login", data={"login": "not a handle!", "next": "/"}, headers=HTML)
    assert response.status_code == 422
    root = assert_accessible(response.text)
    field = next(i for i in tags(root, "input") if i.get("name") == "login")
    assert field.get("value") == "not a handle!" and field.get("aria-invalid") == "true"


async def test_an_expired_access_cookie_resumes_the_session(client: httpx.AsyncClient) -> None:
    handle = unique_handle("resume")
    await browser_login(client, handle)
    client.cookies.delete("chirp_access")  # the browser dropped it after 15 minutes
    page = await client.get("/settings", headers=HTML)
    assert page.status_code == 303 and page.headers["location"] == "/auth/resume?next=%2Fsettings"
    resumed = await client.get(page.headers["location"], headers=HTML)
    assert resumed.status_code == 303 and resumed.headers["location"] == "/settings"
    assert client.cookies.get("chirp_access")
    assert (await client.get("/settings", headers=HTML)).status_code == 200


@pytest.fixture(scope="module")
async def strict_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway whose post limit is one post per person, then one every 1000 s (as a prod limit, scaled 1)."""
    strict = settings.model_copy(update={"ratelimit_scale": 1.0, "ratelimits": {"post": (0.001, 1)}})
    application = create_app(strict)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url=strict.public_url) as http:
            yield http


async def test_forms_spend_from_the_api_rate_limits(strict_client: httpx.AsyncClient) -> None:
    await browser_login(strict_client, unique_handle("fast"))
    first = await post_form(strict_client, "/compose", {"body": "one", "next": "/"})
    assert first.status_code == 303
    second = await post_form(strict_client, "/compose", {"body": "two, too fast", "next": "/"})
    assert second.status_code == 429 and int(second.headers["retry-after"]) > 0
    textarea = tags(assert_accessible(second.text), "textarea")[0]
    assert textarea.text == "two, too fast"
    assert "Too many requests" in second.text


async def test_settings_name_is_never_empty_before_the_profile_lands(
    client: httpx.AsyncClient, pg: Any, pipeline: Any
) -> None:
    """Someone who opens the settings right after signing up may be ahead of the users consumer: the form still
    holds a name, so saving a bio alone is not refused for an empty one."""
    handle = unique_handle("early")
    await browser_login(client, handle)

    async def projected() -> Any:
        return await pg.fetchval("SELECT user_id FROM users WHERE handle = $1", handle)

    await eventually(projected, until=bool, timeout=60)
    await pg.execute("DELETE FROM users WHERE handle = $1", handle)  # as if the sign-up had not landed yet
    page = await client.get("/settings", headers=HTML)
    assert page.status_code == 200
    name_input = next(i for i in tags(parse(page.text), "input") if i.get("name") == "display_name")
    assert name_input.get("value") == handle
