"""Explore: search (posts with highlighted snippets, people) and trending hashtags and people with sparklines."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import nh3
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.errors import InvalidInput
from gateway.pages.internal import MissingEndpoint, call_api
from gateway.pages.web import page, page_route, page_viewer

WINDOWS = (("15m", "15 min"), ("1h", "1 hour"), ("24h", "24 hours"))
DEFAULT_WINDOW = "1h"
KINDS = ("posts", "users")
TRENDS = 10  # shown in the box; `?trends=all` shows up to MORE_TRENDS
MORE_TRENDS = 50


@dataclass(frozen=True, slots=True)
class Spark:
    points: str
    width: int
    height: int
    summary: str


def sparkline(values: Sequence[float], width: int = 96, height: int = 24, pad: float = 2.0) -> Spark | None:
    """An SVG polyline of `values` (oldest first) scaled into width x height; None for fewer than two values."""
    if len(values) < 2:
        return None
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    step = (width - 2 * pad) / (len(values) - 1)
    points = " ".join(
        f"{pad + i * step:.1f},{height - pad - (v - low) / span * (height - 2 * pad):.1f}" for i, v in enumerate(values)
    )
    summary = f"from {values[0]:g} to {values[-1]:g}, peak {high:g}"
    return Spark(points, width, height, summary)


def snippet_html(snippet: str) -> str:
    """A search snippet as safe HTML: only `<mark>` survives, everything else is text."""
    return nh3.clean(snippet, tags={"mark"}, attributes={})


async def _search(request: Request, q: str, kind: str) -> tuple[list[dict[str, Any]] | None, str | None, str]:
    """(results, next cursor, error for the search field); results None when search is not available."""
    query = {"q": q, "type": kind}
    if cursor := request.query_params.get("cursor"):
        query["cursor"] = cursor
    try:
        data = (await call_api(request, "GET", "/api/search", query=query)).data
    except MissingEndpoint:
        return None, None, ""
    except InvalidInput as exc:
        return [], None, exc.message
    items: list[dict[str, Any]] = data.get("items", [])
    if kind == "posts":
        for item in items:
            item["snippet_html"] = snippet_html(item.get("snippet") or item.get("text", ""))
    return items, data.get("next_cursor"), ""


async def _trending(request: Request, window: str, limit: int) -> dict[str, Any] | None:
    try:
        query = {"window": window, "limit": str(limit)}
        data = (await call_api(request, "GET", "/api/trending", query=query)).data
    except MissingEndpoint:
        return None
    for item in data.get("hashtags", []):
        item["spark"] = sparkline([float(v) for v in item.get("sparkline") or []])
    data.setdefault("users", [])
    return data


async def trending_context(request: Request, shown: int = TRENDS) -> dict[str, Any]:
    """What the trending box needs (`?window=`, `?trends=all`); pages without a search pass an empty one."""
    window = request.query_params.get("window", DEFAULT_WINDOW)
    window = window if window in dict(WINDOWS) else DEFAULT_WINDOW
    more = request.query_params.get("trends") == "all"
    return {
        "trending": await _trending(request, window, MORE_TRENDS if more else shown),
        "window": window,
        "windows": WINDOWS,
        "more_trends": more,
        "q": "",
        "kind": "posts",
    }


@page_route
async def explore(request: Request) -> Response:
    """`GET /explore?q=&type=posts|users&window=15m|1h|24h`."""
    me = await page_viewer(request)
    params = request.query_params
    q = params.get("q", "").strip()[:200]
    kind = params.get("type", "posts")
    kind = kind if kind in KINDS else "posts"
    results, next_cursor, error = await _search(request, q, kind) if q else (None, None, "")
    latest = [] if q else (await call_api(request, "GET", "/api/posts", query={"limit": "10"})).data["items"]
    return page(
        request,
        "explore.html",
        me,
        **{**await trending_context(request), "q": q, "kind": kind},
        latest=latest,
        results=results,
        next_cursor=next_cursor,
        search_error=error,
        search_unavailable="Search is not available yet." if q and results is None else "",
    )


routes = [Route("/explore", explore, methods=["GET"])]
