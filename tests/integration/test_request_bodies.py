"""Request bodies: JSON only (415 otherwise, before the body is read), one set of text rules, 422 naming the field."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.helpers import login, unique_handle


async def cookie_login(client: httpx.AsyncClient) -> str:
    """Log in as a browser does (cookies kept); the CSRF token its pages would echo."""
    response = await client.post("/auth/dev-login", json={"login": unique_handle("body")})
    assert response.status_code == 200, response.text
    return str(client.cookies.get("chirp_csrf"))


@pytest.mark.parametrize(("method", "path", "form"), [("POST", "/api/posts", {"body": "hi"}),
                                                      ("PATCH", "/api/me", {"display_name": "Ada"})])  # fmt: skip
async def test_a_form_post_to_the_api_with_the_cookie_and_csrf_token_is_415(
    client: httpx.AsyncClient, method: str, path: str, form: dict[str, str]
) -> None:
    token = await cookie_login(client)
    response = await client.request(method, path, data={"csrf_token": token, **form})
    assert response.status_code == 415, response.text
    assert response.json()["error"] == {
        "code": "unsupported_media_type",
        "message": "Send the body as Content-Type: application/json.",
        "field": "Content-Type",
    }


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded", "application/jsonx"])
async def test_api_bodies_must_be_sent_as_json(client: httpx.AsyncClient, content_type: str | None) -> None:
    headers = await login(client, unique_handle("body"))
    if content_type:
        headers["Content-Type"] = content_type
    for method, path in (("POST", "/api/posts"), ("PATCH", "/api/me"), ("POST", "/auth/dev-login")):
        response = await client.request(method, path, content=b'{"body": "hi"}', headers=headers)
        assert response.status_code == 415, (method, path, response.text)
        assert response.json()["error"]["field"] == "Content-Type"


async def test_json_with_a_charset_is_json(client: httpx.AsyncClient) -> None:
    headers = {**await login(client, unique_handle("body")), "Content-Type": "application/json; charset=utf-8"}
    response = await client.post("/api/posts", content=b'{"body": "charset"}', headers=headers)
    assert response.status_code == 202, response.text


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"body": "\u200b\u200c\u200d\u2060\ufeff"}, "body"),  # zero-width only
        ({"body": "\u202e\u2066 \u2069\u202c"}, "body"),  # direction controls only
        ({"body": "\u3164\u2800"}, "body"),  # blank fillers
        ({"body": "x\r\n" * 1000 + "x"}, "body"),  # 2001 characters once each line break counts one
        ({"body": "x", "reply_to": "a\x00"}, "reply_to"),
        ({"body": "x", "extra": 1}, "extra"),
        ({"body": ["x"]}, "body"),
    ],
)
async def test_posts_follow_the_text_rules(client: httpx.AsyncClient, payload: dict, field: str) -> None:
    headers = await login(client, unique_handle("body"))
    response = await client.post("/api/posts", json=payload, headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field


async def test_crlf_counts_as_one_character_on_the_api_as_in_the_form(client: httpx.AsyncClient) -> None:
    headers = await login(client, unique_handle("body"))
    body = "x\r\n" * 1000  # 2000 characters with LF line breaks, 3000 with CRLF
    response = await client.post("/api/posts", json={"body": body}, headers={**headers, "Prefer": "wait"})
    assert response.status_code == 202, response.text


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"display_name": "\u200b\u200b"}, "display_name"),
        ({"display_name": "\u3164"}, "display_name"),
        ({"display_name": "\u2800 "}, "display_name"),
        ({"display_name": None}, "display_name"),
        ({"display_name": "a\u202eb"}, "display_name"),
        ({"bio": "b" * 161}, "bio"),
        ({"handle": "x"}, "handle"),
        ({}, "body"),
    ],
)
async def test_profile_edits_follow_the_text_rules(client: httpx.AsyncClient, payload: dict, field: str) -> None:
    headers = await login(client, unique_handle("body"))
    response = await client.patch("/api/me", json=payload, headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field
