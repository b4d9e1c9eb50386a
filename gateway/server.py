"""The HTTP/1.1 protocol `chirp gateway` serves with: uvicorn's httptools protocol with a bounded request head.

uvicorn 0.54 caps the head only for its h11 protocol (`h11_max_incomplete_event_size`), counts no headers and
has no deadline for a head: its keep-alive timer stops at the first byte, so a client sending a head slowly
(slowloris) holds the connection for as long as it likes. This protocol

- takes the cap on the request line plus headers from `h11_max_incomplete_event_size` (400 past it),
- refuses more than `MAX_HEADERS` header fields (400),
- closes a connection whose request head is not complete within `timeout_keep_alive` seconds of its opening
  or of the previous response (the keep-alive timer keeps running until the head is complete).

The body is bounded by the app (`gateway/limits.py`), which knows each route's limit.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEADERS = 100  # header fields per request (browsers send about 20)
DEFAULT_MAX_HEAD_BYTES = 16 * 1024


class HeadTooLargeError(Exception):
    """Raised inside a parser callback: httptools turns it into a parse error, answered 400 and closed."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_head_bytes = self.config.h11_max_incomplete_event_size or DEFAULT_MAX_HEAD_BYTES
        self.head_bytes = 0
        self.head_pending = True  # waiting for (the rest of) a request head

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def _unset_keepalive_if_required(self) -> None:
        if not self.head_pending:  # bytes of a head do not stop its clock; only a complete head does
            super()._unset_keepalive_if_required()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.head_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        if len(self.headers) >= MAX_HEADERS:
            raise HeadTooLargeError(f"more than {MAX_HEADERS} headers")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self.head_pending = False
        super()._unset_keepalive_if_required()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        waiting = not self.pipeline  # a pipelined request's head is already here
        super().on_response_complete()  # arms the keep-alive timer when no request is pipelined
        self.head_pending = waiting

    def _count(self, size: int) -> None:
        self.head_bytes += size
        if self.head_bytes > self.max_head_bytes:
            raise HeadTooLargeError(f"request head over {self.max_head_bytes} bytes")
