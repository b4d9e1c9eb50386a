"""gateway/one_write.py under uvicorn's own HTTP protocol: what reaches the connection's transport, write by write.

The protocol is uvicorn's, fed raw request bytes; only the transport is a recording stand-in. This also pins the
internals the middleware relies on (the request cycle's `transport` attribute, written through on `send`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from gateway.one_write import OneWrite

REQUEST = b"GET /%s HTTP/1.1\r\nHost: example.com\r\n%s\r\n"


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


async def _plain(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


async def _empty(request: Request) -> Response:
    return Response(status_code=204)


released = asyncio.Event()


async def _stream(request: Request) -> StreamingResponse:
    async def chunks() -> Any:
        await released.wait()
        yield b"data: 1\n\n"

    return StreamingResponse(chunks(), media_type="text/event-stream")


def _app() -> OneWrite:
    routes = [Route("/plain", _plain), Route("/empty", _empty), Route("/stream", _stream)]
    return OneWrite(Starlette(routes=routes))


async def _serve(path: str, extra: bytes = b"", until: Any = None) -> RecordingTransport:
    config = Config(app=_app(), http="httptools", lifespan="off", log_level="warning")
    protocol = HttpToolsProtocol(config=config, server_state=ServerState(), app_state={})
    transport = RecordingTransport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    protocol.data_received(REQUEST % (path.encode(), extra))
    deadline = asyncio.get_running_loop().time() + 5
    while not (until or (lambda t: protocol.cycle.response_complete))(transport):
        assert asyncio.get_running_loop().time() < deadline, transport.writes
        await asyncio.sleep(0.001)
    if until is None:
        await asyncio.gather(*protocol.tasks)
    return transport


async def test_a_response_with_a_length_goes_out_in_one_write() -> None:
    transport = await _serve("plain")
    assert len(transport.writes) == 1
    head, body = transport.writes[0].split(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"content-length: 15" in head
    assert body == b'{"status":"ok"}'


async def test_a_response_without_a_body_and_a_closing_connection_still_go_out() -> None:
    empty = [w for w in (await _serve("empty")).writes if w]  # a 204 has no length: uvicorn writes its b"" too
    assert len(empty) == 1 and empty[0].startswith(b"HTTP/1.1 204 No Content\r\n")
    closing = await _serve("plain", b"Connection: close\r\n")
    assert len(closing.writes) == 1 and closing.writes[0].endswith(b'{"status":"ok"}') and closing.closed


async def test_a_head_without_a_length_is_not_held_for_its_body() -> None:
    released.clear()
    transport = await _serve("stream", until=lambda t: t.writes)  # the head, before any event
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n") and transport.writes[0].endswith(b"\r\n\r\n")
    released.set()


async def test_without_uvicorn_messages_pass_through() -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "method": "GET", "path": "/plain", "headers": [], "query_string": b""}
    await _app()(scope, receive, send)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
