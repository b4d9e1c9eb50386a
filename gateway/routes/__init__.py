"""One module per resource; each has a `routes` list that `gateway.app.routes()` collects."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.endpoints import HTTPEndpoint
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

Endpoint = Callable[[Request], Awaitable[Response]]


def resource(path: str, **handlers: Endpoint) -> Route:
    """One route serving `path` with an endpoint per method (`get=`, `post=`...), so a 405 lists every method of
    the path in `Allow` (separate routes per method would each list only their own)."""
    methods = {name: staticmethod(fn) for name, fn in handlers.items()}
    return Route(path, type(f"Resource{path}", (HTTPEndpoint,), methods))
