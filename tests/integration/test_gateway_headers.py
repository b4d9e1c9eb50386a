"""Response headers: a complete `Allow` on 405, `no-store` where credentials travel, a /docs page its CSP allows."""

from __future__ import annotations

import re

import httpx

from gateway.metrics import REQUESTS
from tests.integration.helpers import login, unique_handle


async def test_405_allows_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    response = await client.put("/api/posts", json={})
    assert response.status_code == 405
    assert {m.strip() for m in response.headers["allow"].split(",")} == {"GET", "HEAD", "POST"}
    response = await client.put("/api/me", json={})
    assert response.status_code == 405
    assert {m.strip() for m in response.headers["allow"].split(",")} == {"GET", "HEAD", "PATCH", "DELETE"}


async def test_tokens_and_logged_in_responses_are_not_stored(client: httpx.AsyncClient) -> None:
    login_response = await client.post("/auth/dev-login", json={"login": unique_handle("cache")})
    assert login_response.status_code == 200 and "access_token" in login_response.json()
    assert login_response.headers["cache-control"] == "no-store"
    client.cookies.clear()
    headers = {"Authorization": f"Bearer {login_response.json()['access_token']}"}
    for path in ("/api/me", "/api/timeline", "/api/trending"):
        response = await client.get(path, headers=headers)
        assert response.status_code == 200, path
        assert "no-store" in response.headers["cache-control"], path
    assert "no-store" not in (await client.get("/api/trending")).headers.get("cache-control", "")
    static = await client.get("/static/app.css", headers=headers)
    assert "no-store" not in static.headers.get("cache-control", "")


async def test_docs_page_has_no_inline_style_and_its_stylesheet_loads(client: httpx.AsyncClient) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200
    assert "style-src 'self'" in page.headers["content-security-policy"]
    assert "<style" not in page.text and " style=" not in page.text
    for href in re.findall(r'<link rel="stylesheet" href="([^"]+)"', page.text):
        sheet = await client.get(href)
        assert sheet.status_code == 200 and sheet.headers["content-type"].startswith("text/css")


async def test_answers_from_middleware_are_counted_under_their_route(client: httpx.AsyncClient) -> None:
    def count(status: str) -> float:
        return REQUESTS.labels("POST", "/api/posts", status)._value.get()

    headers = await login(client, unique_handle("metrics"))
    before = count("413")
    big = {"Content-Length": str(10**8), **headers}
    response = await client.post("/api/posts", content=b"{}", headers=big)
    assert response.status_code == 413
    assert count("413") == before + 1
