"""Opaque cursors and page sizes shared by every list endpoint: `?cursor=...&limit=...`.

A cursor is the sort key of the last item of a page (for posts: its ULID), base64url-encoded without padding.
Pages are keyset pages ("items after this key"), so a cursor stays valid and no item repeats or goes missing
when new items are inserted meanwhile. Clients must treat the cursor as opaque; only this module reads it.
"""

from __future__ import annotations

import base64
import binascii

from starlette.requests import Request

from gateway.errors import InvalidInput

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_CURSOR_CHARS = 512


def encode_cursor(value: str) -> str:
    """The opaque cursor naming `value` (the sort key of the last item served)."""
    return base64.urlsafe_b64encode(value.encode()).rstrip(b"=").decode()


def decode_cursor(raw: str | None) -> str | None:
    """The value inside a cursor, None when there is none; raises InvalidInput(field="cursor") when malformed."""
    if not raw:
        return None
    if len(raw) > MAX_CURSOR_CHARS:
        raise InvalidInput("cursor is too long", field="cursor")
    try:
        value = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
    except (binascii.Error, ValueError):  # bad base64 or not UTF-8 (UnicodeDecodeError is a ValueError)
        raise InvalidInput("cursor is not one this API issued", field="cursor") from None
    if not value or not value.isprintable() or encode_cursor(value) != raw:
        raise InvalidInput("cursor is not one this API issued", field="cursor")
    return value


def parse_limit(raw: str | None, default: int = DEFAULT_LIMIT, maximum: int = MAX_LIMIT) -> int:
    """`limit` as an int in 1..maximum (default when absent); raises InvalidInput(field="limit") otherwise."""
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()):  # int() would also take " 5", "+5", "1_0" and other scripts' digits
        raise InvalidInput("limit must be an integer", field="limit")
    limit = int(raw)
    if not 1 <= limit <= maximum:
        raise InvalidInput(f"limit must be between 1 and {maximum}", field="limit")
    return limit


def page_params(request: Request) -> tuple[str | None, int]:
    """(cursor value or None, limit) from the query string, validated."""
    query = request.query_params
    return decode_cursor(query.get("cursor")), parse_limit(query.get("limit"))
