"""Bounded requests: the one ASGI middleware that caps what a request may make the gateway hold.

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

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import ApiError, Handler

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


class BoundedRequests:
    """Pure ASGI middleware: body size per route and body time, refused before the app pays for them."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, body_timeout_s: float, on_refused: Handler) -> None:
        self.app = app
        self.on_refused = on_refused  # the app's handler of API errors: JSON, or an error page for browsers
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s

    def limit_for(self, path: str) -> int:
        """The largest body `path` accepts."""
        for pattern, limit in ROUTE_LIMITS:
            if pattern.fullmatch(path):
                return min(limit, self.max_body_bytes)
        return self.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limit_for(scope["path"])
        length = _content_length(scope)
        if length is not None and length > limit:
            return await self._refuse(scope, send, PayloadTooLarge(f"The body is over {limit} bytes.", headers=_CLOSE))
        received = 0
        deadline: float | None = None
        complete = False
        started = False

        async def bounded_receive() -> Message:
            nonlocal received, deadline, complete
            if deadline is None:
                deadline = asyncio.get_running_loop().time() + self.body_timeout_s
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

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, bounded_receive, tracking_send)
        except (PayloadTooLarge, RequestTimeout) as exc:  # raised in a middleware, outside the app's handlers
            if started:
                raise
            await self._refuse(scope, send, exc)

    async def _refuse(self, scope: Scope, send: Send, exc: ApiError) -> None:
        async def no_body() -> Message:
            return {"type": "http.disconnect"}

        await (await self.on_refused(Request(scope, no_body), exc))(scope, no_body, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed length before the app sees it
    return None
