"""Per-request context: a correlation id (from `X-Request-ID` or new) bound to logs and carried into events."""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from structlog.contextvars import bind_contextvars, clear_contextvars

from schemas.events import new_id

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestContext:
    """Binds `correlation_id` for the request and echoes it in the `X-Request-ID` response header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        cid = incoming if _SAFE_ID.match(incoming) else new_id()
        clear_contextvars()
        bind_contextvars(correlation_id=cid)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"x-request-id", cid.encode()))
            await send(message)

        await self.app(scope, receive, send_with_id)
