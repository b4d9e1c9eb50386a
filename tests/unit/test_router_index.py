"""`IndexedRouter` answers fixed paths from an index, and picks exactly the route Starlette's scan would."""

from __future__ import annotations

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from gateway.router import IndexedRouter


def answer(text: str):  # type: ignore[no-untyped-def]
    async def endpoint(request: Request) -> PlainTextResponse:
        return PlainTextResponse(text)

    return endpoint


def app_with(routes: list[Route]) -> Starlette:
    app = Starlette(routes=routes)
    app.router = IndexedRouter(app.router.routes)
    return app


async def get(app: Starlette, method: str, path: str) -> tuple[int, str]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        response = await http.request(method, path)
    return response.status_code, response.text


async def test_fixed_paths_go_to_the_route_the_scan_would_pick() -> None:
    app = app_with(
        [
            Route("/items/{name}", answer("by name"), methods=["GET"]),
            Route("/items/new", answer("shadowed"), methods=["GET"]),
            Route("/items/new", answer("create"), methods=["POST"]),
            Route("/health", answer("ok"), methods=["GET"]),
        ]
    )
    assert await get(app, "GET", "/items/new") == (200, "by name")  # the first full match, as Starlette scans
    assert await get(app, "POST", "/items/new") == (200, "create")
    assert await get(app, "GET", "/health") == (200, "ok")
    assert (await get(app, "HEAD", "/health"))[0] == 200
    assert (await get(app, "DELETE", "/health"))[0] == 405  # not in the index: the scan answers
    assert (await get(app, "GET", "/nothing"))[0] == 404
    index = app.router._fixed  # type: ignore[attr-defined]
    assert index is not None and ("/health", "GET") in index and ("/items/new", "GET") not in index
