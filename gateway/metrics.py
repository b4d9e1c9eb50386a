"""Request metrics for `/metrics`: a pure ASGI middleware counting requests and timing them by route template.

Routes are labelled by their template (`/api/posts/{post_id}`), never the raw path, so label sets stay bounded;
requests no route matched are `unmatched`. A request answered by a middleware (a 429, a 413, a 503 when a store
is down) is counted under the route it was for. The time is from the request's arrival to the last body chunk sent
(for the event stream that is the connection's life: read those series by their route).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from typing import Any

from prometheus_client import Counter, Histogram
from prometheus_client.values import MutexValue
from starlette.routing import BaseRoute, Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUESTS = Counter("chirp_http_requests", "HTTP requests handled", ["method", "route", "status"])
LATENCY = Histogram(
    "chirp_http_request_seconds",
    "HTTP request duration by route",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
UNMATCHED = "unmatched"


def _templates(routes: list[BaseRoute], prefix: str = "") -> dict[int, list[tuple[BaseRoute, str]]]:
    """Endpoint id → the routes (and full templates) that serve it."""
    found: dict[int, list[tuple[BaseRoute, str]]] = {}
    for route in routes:
        path = prefix + getattr(route, "path", "")
        if isinstance(route, Mount) and route.routes:
            for key, value in _templates(list(route.routes), path).items():
                found.setdefault(key, []).extend(value)
        endpoint = getattr(route, "endpoint", None) or getattr(route, "app", None)
        found.setdefault(id(endpoint), []).append((route, path))
    return found


class RouteTemplates:
    """The route template of a request's scope, from the endpoint the router recorded in it."""

    def __init__(self) -> None:
        self._by_endpoint: dict[int, list[tuple[BaseRoute, str]]] | None = None

    def route_of(self, scope: Scope) -> str:
        """The template of the route that served `scope` (the router records its endpoint in the scope)."""
        endpoint = scope.get("endpoint")
        if endpoint is None:  # answered (or failed) in a middleware, before the router ran: match it here
            return self._match(scope)
        if self._by_endpoint is None:
            self._by_endpoint = _templates(list(getattr(scope.get("app"), "routes", [])))
        candidates = self._by_endpoint.get(id(endpoint), [])
        if len(candidates) == 1:
            return candidates[0][1]
        for route, template in candidates:
            if route.matches(scope)[0] is Match.FULL:
                return template
        return candidates[0][1] if candidates else UNMATCHED

    def _match(self, scope: Scope) -> str:
        """The template of the route the router would pick for `scope` (a 405 counts under its path's route)."""
        partial = UNMATCHED
        for route in getattr(scope.get("app"), "routes", []):
            match = route.matches(scope)[0]
            if match is Match.FULL:
                return str(route.path)
            if match is Match.PARTIAL and partial == UNMATCHED:
                partial = str(route.path)
        return partial


_series: dict[tuple[str, str, int], tuple[Any, ...]] = {}  # the values of each series, looked up once


def _values_of(method: str, route: str, status: int) -> tuple[Any, ...]:
    """The count, sum, buckets and bounds behind one series: prometheus_client's own value objects (what
    `/metrics` reads), or its children when its values are not plain in-process ones (multiprocess mode)."""
    count, latency = REQUESTS.labels(method, route, str(status)), LATENCY.labels(method, route)
    values = (count._value, latency._sum, *latency._buckets)
    if all(type(value) is MutexValue for value in values):
        return count._value, latency._sum, latency._buckets, latency._upper_bounds
    return (count, latency)


def observe(method: str, route: str, status: int, seconds: float) -> None:
    """Count one request and observe its duration.

    Every request pays this, so the values are added to directly, as `inc` and `observe` would, without their
    per-value lock (3 µs of `/healthz`'s ~50): only the event loop's thread observes requests. The reach into
    prometheus_client's values is pinned by tests/unit/test_request_metrics.py."""
    key = (method, route, status)
    series = _series.get(key)
    if series is None:
        series = _series[key] = _values_of(method, route, status)
    if len(series) == 2:
        series[0].inc()
        series[1].observe(seconds)
        return
    count, total, buckets, bounds = series
    count._value += 1
    total._value += seconds
    buckets[bisect_left(bounds, seconds)]._value += 1  # the first bucket whose bound is >= seconds


class MetricsMiddleware:
    """Counts requests by method, route template and status, and observes their duration (the gateway does this in
    `gateway.middleware.PerRequest`; this one wraps other ASGI apps)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.templates = RouteTemplates()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status: dict[str, Any] = {"code": 500}

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            observe(scope["method"], self.templates.route_of(scope), status["code"], time.perf_counter() - started)
