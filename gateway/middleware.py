"""What every request gets, in one pass: a correlation id (from `X-Request-ID` or new) bound to logs, carried into
events and echoed in `X-Request-ID`; the security headers (gateway/pages/security.py); and its count and duration
by route template for `/metrics` (gateway/metrics.py). One middleware with one `send` wrapper, instead of three
layers each wrapping `send`: this is the cost every route pays, `/healthz` included."""

from __future__ import annotations

import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from structlog.contextvars import bind_contextvars, clear_contextvars

from gateway.metrics import RouteTemplates, observe
from gateway.pages.security import NO_STORE, add_security_headers, carries_credentials
from schemas.events import new_id

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class PerRequest:
    """Correlation id, security headers and request metrics for every HTTP request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.templates = RouteTemplates()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        incoming = b""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = value
                break
        cid = incoming.decode("latin-1") if incoming else ""
        if not _SAFE_ID.match(cid):
            cid = new_id()
        clear_contextvars()
        bind_contextvars(correlation_id=cid)
        private = carries_credentials(scope)
        status = 500

        async def send_once(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                if (private or b"set-cookie" in names) and b"cache-control" not in names:
                    headers.append(NO_STORE)
                add_security_headers(headers)
                headers.append((b"x-request-id", cid.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_once)
        finally:
            observe(scope["method"], self.templates.route_of(scope), status, time.perf_counter() - started)
