"""Opaque, strictly parsed cursors and page sizes shared by every list endpoint (gateway/cursors.py)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from starlette.requests import Request

from gateway.cursors import POST_ID, PageQuery, from_micros, micros, post_cursor, post_page_params
from gateway.errors import InvalidInput
from gateway.requests import validated
from gateway.routes.notifications import NOTIFICATIONS_CURSOR
from gateway.routes.search import POSTS_CURSOR, USERS_CURSOR
from gateway.routes.users import FOLLOW_CURSOR
from schemas.events import new_id


def request(query: str) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/", "query_string": query.encode(), "headers": []})


def forge(value: object) -> str:
    """A cursor as a client could make one: any JSON, base64url without padding."""
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize("value", [new_id(), "a", "é 漢字 🙂", "x" * 64])
def test_a_post_cursor_decodes_to_what_was_encoded(value: str) -> None:
    cursor = post_cursor(value)
    assert cursor is not None and POST_ID.decode(cursor) == (value,)
    assert "=" not in cursor and "/" not in cursor and "+" not in cursor  # safe in a query string as is


def test_no_cursor_is_none() -> None:
    assert POST_ID.decode(None) is None
    assert POST_ID.decode("") is None
    assert post_cursor(None) is None


def test_every_shape_round_trips() -> None:
    at = datetime(2026, 11, 24, 16, 30, 12, 123456, tzinfo=UTC)
    assert from_micros(micros(at)) == at
    for shape, key in [
        (POSTS_CURSOR, (40, micros(at), new_id())),
        (POSTS_CURSOR, ("o", micros(at), new_id())),
        (USERS_CURSOR, (20,)),
        (FOLLOW_CURSOR, (micros(at), "dev-someone")),
        (NOTIFICATIONS_CURSOR, (1_764_000_000_000, new_id())),
    ]:
        assert shape.decode(shape.encode(key)) == key  # type: ignore[attr-defined]


MALFORMED = ["!!!", "a", "abc$", "/w==", "_-8", post_cursor("ok") + "=", "AA", "x" * 600, "²", "wrI"]
FORGED = [
    forge("²"),  # a superscript two: str.isdigit() says it is a digit
    forge(["²"]),
    forge(["1²", "x"]),
    forge(["a\x00b"]),  # NUL would fail in PostgreSQL
    forge([""]),
    forge(["x" * 65]),
    forge([1, 2, 3, 4]),
    forge([None]),
    forge(["a", "b"]),
    forge({"id": "a"}),
    forge([-1, 1, "x"]),
    forge([601, 1, "x"]),  # offsets beyond the ranked candidates
    forge([0, 2**60, "x"]),  # a time past year 9999
    forge([0, -5, "x"]),
    forge(["o", 1e300, "x"]),
    forge(["o", "9999-12-31T23:59:59-23:59", "x"]),
    forge(["p", 1, "x"]),
    forge([1.5]),
    forge([True]),
    forge([1001]),
    forge(["inf", "x"]),
    forge(["NaN", "x"]),
    forge([0, 1, "x"]) + "A",
    base64.urlsafe_b64encode(b'["a"]').decode(),  # padded: not the spelling this API issues
    base64.urlsafe_b64encode(b"\xff\xfe").decode(),
]


@pytest.mark.parametrize("raw", MALFORMED + FORGED)
@pytest.mark.parametrize("shape", [POST_ID, POSTS_CURSOR, USERS_CURSOR, FOLLOW_CURSOR, NOTIFICATIONS_CURSOR])
def test_a_forged_cursor_is_422_naming_the_cursor(shape: object, raw: str) -> None:
    if shape is POST_ID and raw == forge(["²"]):
        return  # any string is a post id
    with pytest.raises(InvalidInput) as caught:
        shape.decode(raw)  # type: ignore[attr-defined]
    assert caught.value.field == "cursor"


def test_one_lists_cursor_is_not_anothers() -> None:
    follow = FOLLOW_CURSOR.encode((1, "x"))
    for shape in (POST_ID, POSTS_CURSOR, USERS_CURSOR):
        with pytest.raises(InvalidInput):
            shape.decode(follow)  # type: ignore[attr-defined]


@pytest.mark.parametrize(("raw", "expected"), [(None, 20), ("1", 1), ("100", 100), ("42", 42)])
def test_limit_defaults_to_20_and_accepts_1_to_100(raw: str | None, expected: int) -> None:
    assert post_page_params(request("" if raw is None else f"limit={raw}"))[1] == expected


BAD_LIMITS = ["", "0", "101", "-1", "abc", "1.5", " 5", "+5", "1_0", "٣", "²", "99999999999999999999"]


@pytest.mark.parametrize("raw", BAD_LIMITS)
def test_a_bad_limit_is_422_naming_the_limit(raw: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validated(PageQuery, {"limit": raw})
    assert caught.value.field == "limit"


def test_post_page_params_reads_the_query_string() -> None:
    post_id = new_id()
    assert post_page_params(request(f"cursor={post_cursor(post_id)}&limit=5")) == (post_id, 5)
    assert post_page_params(request("")) == (None, 20)
    with pytest.raises(InvalidInput):
        post_page_params(request("limit=0"))
