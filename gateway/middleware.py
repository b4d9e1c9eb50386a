"""What every request gets, in one pass: this is the cost every route pays, `/healthz` included, so it is one
middleware with one `send` wrapper instead of a layer (and a `send` wrapper) per concern:

- a correlation id (from `X-Request-ID` or new) bound to logs, carried into events and echoed in `X-Request-ID`;
- the security headers (gateway/pages/security.py);
- the bounds on request bodies (gateway/limits.py: 413 for a body over the route's limit, 408 for a late one;
  a request announcing no body is not wrapped at all);
- the rate limits of the routes that have them (gateway/ratelimit.py: 429; no I/O for the others);
- the 503 for an infrastructure error raised below, by an endpoint or by the rate limiter (gateway/errors.py
  `unavailable`);
- its count and duration by route template for `/metrics` (gateway/metrics.py), whatever answered it.
"""

from __future__ import annotations

import random
import re
import time
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from structlog.contextvars import bind_contextvars, clear_contextvars

from chirp.logging import get_logger
from gateway.errors import Handler, unavailable
from gateway.limits import BodyLimits, PayloadTooLarge, RequestTimeout
from gateway.metrics import RouteTemplates, observe
from gateway.pages.security import carries_credentials, response_headers
from gateway.ratelimit import RateLimitMiddleware

log = get_logger("chirp.gateway")

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_DIGITS = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's base32, as ULIDs spell them
_FIVE_BITS = bytes(ord(_DIGITS[b & 31]) for b in range(256))  # a byte's low 5 bits -> its digit (uniform: 256 = 8*32)
_time_part: list[Any] = [0, ""]  # the last millisecond and its 10 digits


def new_correlation_id() -> str:
    """A new ULID (26 characters: 10 of the millisecond, 16 of 80 random bits). A correlation id needs neither
    monotonic order within a millisecond (as post ids do) nor unpredictable bits, so it is made ~5x cheaper than
    `schemas.events.new_id`: every request without an `X-Request-ID` pays for one. Its 16 random digits are 16
    random bytes translated to digits in C (5 bits each), not 80 bits cut apart in Python."""
    ms = time.time_ns() // 1_000_000
    if _time_part[0] != ms:
        _time_part[:] = ms, "".join(_DIGITS[(ms >> shift) & 31] for shift in range(45, -5, -5))
    return _time_part[1] + random.randbytes(16).translate(_FIVE_BITS).decode()


async def _no_body() -> Message:
    return {"type": "http.disconnect"}


class PerRequest:
    """Correlation id, security headers, body bounds, rate limits, 503s and request metrics for every request."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        on_error: Handler,
        max_body_bytes: int,
        body_timeout_s: float,
        retry_after_s: int = 5,
    ) -> None:
        self.app = app
        self.on_error = on_error  # the app's handler of API errors: JSON, or an error page for browsers
        self.bodies = BodyLimits(max_body_bytes=max_body_bytes, body_timeout_s=body_timeout_s)
        self.rate_limits = RateLimitMiddleware(app)
        self.retry_after_s = retry_after_s
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
        cid = incoming.decode("latin-1")
        if not _SAFE_ID.match(cid):
            cid = new_correlation_id()
        clear_contextvars()
        bind_contextvars(correlation_id=cid)
        private = carries_credentials(scope)
        request_id = (b"x-request-id", cid.encode())
        status = 0  # until a response starts

        async def send_once(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = response_headers(message.get("headers", ()), private, request_id)
            await send(message)

        try:
            bounded = self.bodies.bounded(scope, receive)
            refusal = await self.rate_limits.refusal(scope)
            if refusal is not None:
                await refusal(scope, bounded, send_once)
            else:
                await self.app(scope, bounded, send_once)
        except (PayloadTooLarge, RequestTimeout) as exc:  # raised outside the app's handlers (or before it)
            if status:
                raise
            await (await self.on_error(Request(scope, _no_body), exc))(scope, _no_body, send_once)
        except Exception as exc:
            refused = unavailable(exc, self.retry_after_s)
            if refused is None:
                raise
            log.warning("dependency unavailable", path=scope["path"], error=f"{type(exc).__name__}: {exc}")
            if not status:  # a response already started (an event stream) cannot change
                await (await self.on_error(Request(scope), refused))(scope, receive, send_once)
        finally:
            observe(scope["method"], self.templates.route_of(scope), status or 500, time.perf_counter() - started)
