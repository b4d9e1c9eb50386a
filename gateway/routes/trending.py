"""Trending: `GET /api/trending?window=15m|1h|24h&limit=` → `{"hashtags": [...], "users": [...]}`.

The trending consumer precomputes each window's ranking (store/trending.py); this endpoint only reads it: one Redis
GET of a JSON blob, cut to `limit`. Before the first ranking exists the lists are empty.
The blob and its cuts are kept in the process for `CACHE_S` (rankings change every few seconds at most), so a
busy gateway asks Redis about once a second per window instead of once per request; a query string read once is
not validated again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal, get_args

import orjson
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.openapi import contract
from gateway.requests import Limit, QueryModel, query_as
from gateway.state import state_of
from store.trending import TOP, ranking_key
from store.trending_score import WINDOWS

CACHE_S = 1.0
DEFAULT_LIMIT = 10
_EMPTY = b'{"hashtags":[],"users":[]}'
_MAX_QUERIES = 256
_queries: dict[bytes, tuple[str, int]] = {}  # query strings that validated -> (window, limit): no pydantic per request


WindowName = Literal["15m", "1h", "24h"]
assert set(get_args(WindowName)) == set(WINDOWS), "the windows the route accepts are the ones ranked"
DEFAULT_WINDOW: WindowName = "1h"


class TrendingQuery(QueryModel):
    window: WindowName = DEFAULT_WINDOW
    limit: Limit(TOP) = DEFAULT_LIMIT  # type: ignore[valid-type]


class TrendingTag(BaseModel):
    tag: str
    score: float
    count: int = Field(description="How many people used it in the window")
    sparkline: list[int] = Field(description="Uses per slice of the window, oldest first")


class TrendingUser(BaseModel):
    handle: str
    score: float
    count: int


class Trending(BaseModel):
    hashtags: list[TrendingTag]
    users: list[TrendingUser]


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


@contract(Trending, query=TrendingQuery)
async def trending(request: Request) -> Response:
    """`GET /api/trending` → the precomputed ranking of the window."""
    raw = request.scope["query_string"]
    parsed = _queries.get(raw)
    if parsed is None:
        query = query_as(request, TrendingQuery)
        if len(_queries) >= _MAX_QUERIES:
            _queries.clear()
        parsed = _queries[raw] = (query.window, query.limit)
    window, limit = parsed
    state = state_of(request)
    cache: dict[str, _Cached] = state.trending_cache
    entry = cache.get(window)
    now = time.monotonic()
    if entry is None or entry.until < now:
        entry = cache[window] = _Cached(await state.redis.get(ranking_key(window)), now + CACHE_S)
    body = entry.cuts.get(limit)
    if body is None:
        body = entry.cuts[limit] = cut(entry.blob, limit)
    return Response(body, media_type="application/json")


routes = [Route("/api/trending", trending, methods=["GET"])]
