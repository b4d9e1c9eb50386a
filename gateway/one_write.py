"""One write per response: a response's head goes out in the same socket write as its first body chunk.

uvicorn writes the head on `http.response.start` and the body on `http.response.body`: two `write(2)` calls, two
TCP segments and two wake-ups of the client for every response. On loopback those two system calls were about
half of the CPU `/healthz` costs and a third of the timeline's (py-spy). A response that announces its length
(every `Response` the app builds: head and body sent back to back) is held for that one write here. A head
without a length (an event stream) goes out at once, so a client waiting for it is not kept waiting.

uvicorn has no option for this; its request cycle writes through its `transport` attribute, which this
middleware points at a buffer for the two calls (pinned by tests/unit/test_one_write.py). Under any
other server (or a test client) `send` has no such cycle and responses pass through unchanged.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class _Buffer:
    """Stands in for the connection's transport while uvicorn writes one response's head and first body chunk."""

    __slots__ = ("chunks", "transport")

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.chunks.append(data)

    def flush(self) -> None:
        if self.chunks:
            self.transport.write(b"".join(self.chunks))
            self.chunks = []

    def close(self) -> None:  # `Connection: close`: what was written goes out first
        self.flush()
        self.transport.close()

    def is_closing(self) -> bool:
        return bool(self.transport.is_closing())


class OneWrite:
    """Sends a response's head with its first body chunk when uvicorn serves the app (see the module doc)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        cycle = getattr(send, "__self__", None)
        if scope["type"] != "http" or cycle is None or getattr(cycle, "transport", None) is None:
            return await self.app(scope, receive, send)
        head: Message | None = None

        async def send_with_head(message: Message) -> None:
            nonlocal head
            if head is None:
                if message["type"] == "http.response.start" and _has_length(message):
                    head = message  # held until the body
                    return
                return await send(message)
            transport = cycle.transport
            buffer = cycle.transport = _Buffer(transport)
            try:
                held, head = head, None
                await send(held)
                await send(message)
            finally:
                cycle.transport = transport
                buffer.flush()

        try:
            await self.app(scope, receive, send_with_head)
        finally:
            if head is not None:  # a head never followed by a body (the app failed): it goes out alone
                held, head = head, None
                await send(held)


def _has_length(message: Message) -> bool:
    return any(name.lower() == b"content-length" for name, _ in message.get("headers", ()))
