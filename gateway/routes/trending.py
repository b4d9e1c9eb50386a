"""Trending: `GET /api/trending?window=15m|1h|24h&limit=` → `{"hashtags": [...], "users": [...]}`.

The trending consumer precomputes each window's ranking (store/trending.py); this endpoint only reads it: one Redis
GET of a JSON blob, cut to `limit`. Before the first ranking exists the lists are empty.
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.cursors import parse_limit
from gateway.errors import InvalidInput
from gateway.state import state_of
from store.trending import TOP, ranking_key
from store.trending_score import WINDOWS

DEFAULT_WINDOW = "1h"
DEFAULT_LIMIT = 10
_EMPTY = b'{"hashtags":[],"users":[]}'


def validate_window(raw: str | None) -> str:
    window = raw or DEFAULT_WINDOW
    if window not in WINDOWS:
        raise InvalidInput(f"window must be one of {', '.join(WINDOWS)}.", field="window")
    return window


def cut(blob: str | bytes | None, limit: int) -> bytes:
    """The stored ranking with at most `limit` hashtags and users (as stored when `limit` is the maximum)."""
    if blob is None:
        return _EMPTY
    if limit >= TOP:
        return blob.encode() if isinstance(blob, str) else blob
    ranking = orjson.loads(blob)
    return orjson.dumps({"hashtags": ranking["hashtags"][:limit], "users": ranking["users"][:limit]})


async def trending(request: Request) -> Response:
    """`GET /api/trending` → the precomputed ranking of the window."""
    window = validate_window(request.query_params.get("window"))
    limit = parse_limit(request.query_params.get("limit"), default=DEFAULT_LIMIT, maximum=TOP)
    blob = await state_of(request).redis.get(ranking_key(window))
    return Response(cut(blob, limit), media_type="application/json")


routes = [Route("/api/trending", trending, methods=["GET"])]
