"""Calling the JSON API in-process: a page reuses an endpoint's validation and logic without an HTTP hop.

The endpoint is found by matching a method and path against the app's own routes, so pages depend on the API's
paths and JSON shapes (the public contract), not on the names of the functions behind them. Domain errors
(`ApiError`) propagate to the caller unchanged, so a page can show them next to the field at fault; the API's rate
limits apply as to the JSON request (`TooManyRequests` with `Retry-After`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Message, Receive, Scope, Send

from gateway.errors import TooManyRequests
from gateway.ratelimit import RateLimitMiddleware


class MissingEndpoint(LookupError):
    """No route of the app answers this method and path (the API is not there yet)."""


@dataclass(frozen=True, slots=True)
class ApiResult:
    status: int
    data: Any
    response: Response

    @property
    def set_cookies(self) -> list[tuple[bytes, bytes]]:
        """The response's `Set-Cookie` headers, to copy onto a page's own response."""
        return [(k, v) for k, v in self.response.raw_headers if k == b"set-cookie"]


def _endpoint(request: Request, method: str, path: str) -> tuple[Any, dict[str, Any]]:
    probe = {"type": "http", "method": method, "path": path, "root_path": ""}
    for route in request.app.router.routes:
        if isinstance(route, Route):
            match, child = route.matches(probe)
            # A resource (gateway.routes.resource) matches every method: its endpoint for this one, if any.
            found = (
                getattr(route.endpoint, method.lower(), None) if isinstance(route.endpoint, type) else route.endpoint
            )
            if match is Match.FULL and found is not None:
                return found, child.get("path_params", {})
    raise MissingEndpoint(f"{method} {path}")


async def call_api(
    request: Request,
    method: str,
    path: str,
    *,
    query: dict[str, str] | None = None,
    json: Any = None,
    headers: dict[str, str] | None = None,
) -> ApiResult:
    """Run the endpoint serving `method path` with the caller's cookies and identity; its JSON decoded."""
    endpoint, path_params = _endpoint(request, method, path)
    body = orjson.dumps(json) if json is not None else b""
    extra = {k.lower(): v for k, v in (headers or {}).items()}
    if json is not None:
        extra["content-type"] = "application/json"
    kept = [(k, v) for k, v in request.scope["headers"] if k.decode("latin-1") not in extra and k != b"content-length"]
    raw_headers = kept + [(k.encode("latin-1"), v.encode("latin-1")) for k, v in extra.items()]
    raw_headers.append((b"content-length", str(len(body)).encode()))
    scope = {
        **request.scope,
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": urlencode(query or {}).encode(),
        "headers": raw_headers,
        "path_params": path_params,
    }
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    captured: list[Response] = []
    refusal: list[Message] = []

    async def run(inner_scope: Scope, inner_receive: Receive, _send: Send) -> None:
        captured.append(await endpoint(Request(inner_scope, inner_receive)))

    async def refused(message: Message) -> None:
        refusal.append(message)

    # The API's rate limits apply to its paths in a middleware; the same middleware guards the in-process call,
    # so a form spends from the same buckets as the JSON request it stands for.
    await RateLimitMiddleware(run)(scope, receive, refused)
    if not captured:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in refusal[0].get("headers", [])}
        retry = headers.get("retry-after", "1")
        raise TooManyRequests(f"Too many requests; try again in {retry} s.", headers={"Retry-After": retry})
    response = captured[0]
    data = orjson.loads(response.body) if response.body else None
    return ApiResult(response.status_code, data, response)
