"""Bounded requests: what caps what a request may make the gateway hold (applied by gateway.middleware.PerRequest).

- A `Content-Length` over the route's limit is refused with 413 before any of the body is read.
- A body without a length (chunked) is counted as it arrives and cut off with 413 at the limit.
- A body must arrive whole within `http_body_timeout_s` of the first read, else 408.

Each refusal closes the connection (`Connection: close`): the rest of an oversized or slow body is not waited
for. What the ASGI app cannot see (the size of the request head, a head sent slowly) the server bounds:
see `gateway/server.py`.
"""

from __future__ import annotations

import asyncio
import re

from starlette.types import Message, Receive, Scope

from gateway.errors import ApiError

# Routes that take only a few fields allow less than the default (logins are unauthenticated: every byte an
# anonymous client may make us hold counts).
ROUTE_LIMITS: tuple[tuple[re.Pattern[str], int], ...] = (
    (re.compile(r"/auth/(dev-login|refresh|logout)|/login|/logout"), 4 * 1024),
)
_CLOSE = {"Connection": "close"}


class PayloadTooLarge(ApiError):
    status, code = 413, "too_large"


class RequestTimeout(ApiError):
    status, code = 408, "request_timeout"


class BodyLimits:
    """Body size per route and body time, refused before the app pays for them (gateway.middleware.PerRequest
    applies them to every request)."""

    def __init__(self, *, max_body_bytes: int, body_timeout_s: float) -> None:
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s

    def limit_for(self, path: str) -> int:
        """The largest body `path` accepts."""
        for pattern, limit in ROUTE_LIMITS:
            if pattern.fullmatch(path):
                return min(limit, self.max_body_bytes)
        return self.max_body_bytes

    def bounded(self, scope: Scope, receive: Receive) -> Receive:
        """`receive` for the app: raises PayloadTooLarge at once for a `Content-Length` over the limit, and while
        reading once the body grows past it, RequestTimeout once it is late. A request announcing no body (neither
        `Content-Length` nor `Transfer-Encoding`) has none, so its `receive` is left as it is."""
        length, chunked = _body_headers(scope)
        if length is None and not chunked:
            return receive
        limit = self.limit_for(scope["path"])
        if length is not None and length > limit:
            raise PayloadTooLarge(f"The body is over {limit} bytes.", headers=_CLOSE)
        received = 0
        deadline: float | None = None
        complete = False
        timeout_s = self.body_timeout_s

        async def bounded_receive() -> Message:
            nonlocal received, deadline, complete
            if deadline is None:
                deadline = asyncio.get_running_loop().time() + timeout_s
            try:
                # Once the body is complete, a read waits for the disconnect (an event stream): no deadline.
                async with asyncio.timeout_at(None if complete else deadline):
                    message = await receive()
            except TimeoutError:
                raise RequestTimeout("The request body did not arrive in time.", headers=_CLOSE) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLarge(f"The body is over {limit} bytes.", headers=_CLOSE)
                complete = not message.get("more_body", False)
            return message

        return bounded_receive


def _body_headers(scope: Scope) -> tuple[int | None, bool]:
    """(the `Content-Length`, whether a `Transfer-Encoding` is named)."""
    length, chunked = None, False
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                chunked = True  # the server refuses a malformed length before the app sees it: bound it anyway
        elif name == b"transfer-encoding":
            chunked = True
    return length, chunked
