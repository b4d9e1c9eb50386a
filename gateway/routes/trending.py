"""Trending: `GET /api/trending?window=15m|1h|24h&limit=` → `{"hashtags": [...], "users": [...]}`.

The trending consumer precomputes each window's ranking (store/trending.py); this endpoint only reads it: one Redis
GET of a JSON blob, cut to `limit`. Before the first ranking exists the lists are empty.
The blob and its cuts are kept in the process for `CACHE_S` (rankings change every few seconds at most), so a
busy gateway asks Redis about once a second per window instead of once per request.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.cursors import parse_limit
from gateway.errors import InvalidInput
from gateway.state import state_of
from store.trending import TOP, ranking_key
from store.trending_score import WINDOWS

CACHE_S = 1.0
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


@dataclass
class _Cached:
    blob: str | bytes | None
    until: float
    cuts: dict[int, bytes] = field(default_factory=dict)


async def trending(request: Request) -> Response:
    """`GET /api/trending` → the precomputed ranking of the window."""
    window = validate_window(request.query_params.get("window"))
    limit = parse_limit(request.query_params.get("limit"), default=DEFAULT_LIMIT, maximum=TOP)
    state = state_of(request)
    cache: dict[str, _Cached] = state.extras.setdefault("trending_cache", {})
    entry = cache.get(window)
    now = time.monotonic()
    if entry is None or entry.until < now:
        entry = cache[window] = _Cached(await state.redis.get(ranking_key(window)), now + CACHE_S)
    body = entry.cuts.get(limit)
    if body is None:
        body = entry.cuts[limit] = cut(entry.blob, limit)
    return Response(body, media_type="application/json")


routes = [Route("/api/trending", trending, methods=["GET"])]
