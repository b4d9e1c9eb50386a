"""Opaque cursors and page sizes shared by every list endpoint (gateway/cursors.py)."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from gateway.cursors import decode_cursor, encode_cursor, page_params, parse_limit
from gateway.errors import InvalidInput
from schemas.events import new_id


def request(query: str) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/", "query_string": query.encode(), "headers": []})


@pytest.mark.parametrize("value", [new_id(), "a", "2026-11-24T16:30:12Z|01J", "é 漢字 🙂", "x" * 300])
def test_a_cursor_decodes_to_what_was_encoded(value: str) -> None:
    cursor = encode_cursor(value)
    assert decode_cursor(cursor) == value
    assert "=" not in cursor and "/" not in cursor and "+" not in cursor  # safe in a query string as is


def test_no_cursor_is_none() -> None:
    assert decode_cursor(None) is None
    assert decode_cursor("") is None


@pytest.mark.parametrize("raw", ["!!!", "a", "abc$", "/w==", "_-8", encode_cursor("ok") + "=", "AA", "x" * 600])
def test_a_malformed_cursor_is_422_naming_the_cursor(raw: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        decode_cursor(raw)
    assert caught.value.field == "cursor"


@pytest.mark.parametrize(("raw", "expected"), [(None, 20), ("", 20), ("1", 1), ("100", 100), ("42", 42)])
def test_limit_defaults_to_20_and_accepts_1_to_100(raw: str | None, expected: int) -> None:
    assert parse_limit(raw) == expected


@pytest.mark.parametrize("raw", ["0", "101", "-1", "abc", "1.5", " 5", "+5", "1_0", "٣", "99999999999999999999"])
def test_a_bad_limit_is_422_naming_the_limit(raw: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_limit(raw)
    assert caught.value.field == "limit"


def test_page_params_reads_the_query_string() -> None:
    post_id = new_id()
    assert page_params(request(f"cursor={encode_cursor(post_id)}&limit=5")) == (post_id, 5)
    assert page_params(request("")) == (None, 20)
    with pytest.raises(InvalidInput):
        page_params(request("limit=0"))
