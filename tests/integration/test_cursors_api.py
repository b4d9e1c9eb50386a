"""Every list endpoint answers a forged cursor with 422 naming `cursor`, never a 500."""

from __future__ import annotations

import base64
from urllib.parse import urlencode

import httpx
import pytest

from tests.integration.helpers import forge, login, unique_handle


def old_style(value: str) -> str:
    """A cursor in the form the API once issued (base64url of a plain string): what clients may still hold."""
    return base64.urlsafe_b64encode(value.encode()).rstrip(b"=").decode()


FORGED = [
    "!!",
    "²",
    old_style("²"),  # str.isdigit() is true for a superscript two, int() refuses it
    old_style("o|²|x"),
    old_style("1²|1|x"),
    old_style("²:x"),  # a Redis score that is "not a float"
    old_style('["9999-12-31T23:59:59-23:59","x"]'),  # a date past the range once moved to UTC
    old_style('["0001-01-01T00:00:00+14:00","x"]'),
    forge(["²"]),
    forge(["a\x00"]),
    forge([0, 2**60, "x"]),
    forge(["o", -1, "x"]),
    forge([2**70, "x"]),
    forge([1e308]),
    forge({"a": 1}),
    forge(None),
]
LISTS = [
    "/api/search?q=hello",
    "/api/search?q=hello&type=users",
    "/api/posts",
    "/api/timeline",
    "/api/notifications",
    "/api/users/{handle}/posts",
    "/api/users/{handle}/followers",
    "/api/users/{handle}/following",
    "/api/tags/hello/posts",
]


@pytest.mark.parametrize("path", LISTS)
async def test_a_forged_cursor_is_422_naming_the_cursor(client: httpx.AsyncClient, path: str) -> None:
    handle = unique_handle("cursor")
    headers = await login(client, handle)
    url = path.format(handle=handle)
    for cursor in FORGED:
        query = urlencode({"cursor": cursor})
        response = await client.get(f"{url}{'&' if '?' in url else '?'}{query}", headers=headers)
        if response.status_code == 200 and cursor == forge(["²"]) and "search" not in url:
            continue  # any string is a post id; a page after it is a page
        assert response.status_code == 422, (cursor, response.status_code, response.text)
        assert response.json()["error"]["field"] == "cursor", cursor
