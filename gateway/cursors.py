"""Opaque, strictly parsed cursors and page sizes shared by every list endpoint: `?cursor=...&limit=...`.

A cursor is the sort key of the last item of a page, as a JSON array, base64url-encoded without padding. Each
list declares the shape of its key once (a `CursorShape`: a tuple type of bounded ints and ids); reading a
cursor validates it against that shape (pydantic, strict), so what reaches a query is always a value the list
could have issued: a forged cursor (bad base64, other digits than ASCII, a time out of range, a key of another
list's shape) is a 422 naming `cursor`, never an error inside PostgreSQL or Redis. Pages are keyset pages
("items after this key"), so a cursor stays valid and no item repeats or goes missing when new items are
inserted meanwhile. Clients must treat the cursor as opaque; only this module reads it.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Generic, TypeVar

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from starlette.requests import Request

from gateway.errors import InvalidInput
from gateway.requests import Limit, QueryModel, query_as
from schemas.events import Id

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_CURSOR_CHARS = 512
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# A time in a cursor: whole microseconds since the epoch, up to 2**53 (year 2255, exact in a JSON number).
Micros = Annotated[int, Field(ge=0, le=2**53)]

T = TypeVar("T")


def micros(at: datetime) -> int:
    """`at` as whole microseconds since the epoch (exact, unlike `timestamp()`)."""
    return (at - _EPOCH) // timedelta(microseconds=1)


def from_micros(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


class CursorShape(Generic[T]):
    """The key one list pages by: `encode` what it issues, `decode` what clients send back (strictly)."""

    def __init__(self, shape: Any) -> None:
        self._adapter: TypeAdapter[T] = TypeAdapter(shape, config=ConfigDict(strict=True))

    def encode(self, value: T) -> str:
        return base64.urlsafe_b64encode(self._adapter.dump_json(value)).rstrip(b"=").decode()

    def decode(self, raw: str | None) -> T | None:
        """The key inside `raw`, None when there is none; InvalidInput(field="cursor") unless this list issued it."""
        if not raw:
            return None
        if len(raw) > MAX_CURSOR_CHARS:
            raise InvalidInput("cursor is too long", field="cursor")
        try:
            if not raw.isascii():
                raise ValueError(raw)
            data = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
            value = self._adapter.validate_json(data)
        except (binascii.Error, ValueError, ValidationError):  # ValidationError is a ValueError; said for clarity
            raise InvalidInput("cursor is not one this API issued", field="cursor") from None
        if self.encode(value) != raw:  # one key, one spelling: no padding, no other alphabet, no whitespace
            raise InvalidInput("cursor is not one this API issued", field="cursor")
        return value

    def page(self, request: Request) -> tuple[T | None, int]:
        """(cursor key or None, limit) from the query string, validated."""
        query = query_as(request, PageQuery)
        return self.decode(query.cursor), query.limit


# The post lists (everyone's, a user's, a tag's, replies, the home timeline) page by post id.
POST_ID: CursorShape[tuple[str]] = CursorShape(tuple[Id])


# Opaque: only a `next_cursor` the API issued is valid (the format names it for clients and fuzzers).
CURSOR_FIELD: Any = Field(
    "",
    max_length=MAX_CURSOR_CHARS,
    json_schema_extra={"format": "cursor"},
    description="`next_cursor` of the page before",
)


class PageQuery(QueryModel):
    """`?cursor&limit` of a list."""

    cursor: str = CURSOR_FIELD
    limit: Limit(MAX_LIMIT) = DEFAULT_LIMIT  # type: ignore[valid-type]


_post_pages: dict[bytes, tuple[str | None, int]] = {}  # query strings that validated -> what they ask for
_MAX_POST_PAGES = 4096


def post_page_params(request: Request) -> tuple[str | None, int]:
    """(post id to continue after or None, limit) of a post list. A query string read once (the first page's above
    all) is not validated again: the answer is the same."""
    raw: bytes = request.scope["query_string"]
    found = _post_pages.get(raw)
    if found is None:
        key, limit = POST_ID.page(request)
        if len(_post_pages) >= _MAX_POST_PAGES:
            _post_pages.clear()
        found = _post_pages[raw] = (key[0] if key else None), limit
    return found


_post_cursors: dict[str, str] = {}  # post id -> its cursor: the first page's is issued again and again


def post_cursor(post_id: str | None) -> str | None:
    """The next-page cursor of a post list continuing after `post_id` (None on the last page)."""
    if not post_id:
        return None
    found = _post_cursors.get(post_id)
    if found is None:
        if len(_post_cursors) >= _MAX_POST_PAGES:
            _post_cursors.clear()
        found = _post_cursors[post_id] = POST_ID.encode((post_id,))
    return found
