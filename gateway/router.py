"""Starlette's router with an index of its fixed paths: a request for `/api/trending` or `/healthz` goes straight
to its route instead of trying every route's pattern in turn (~60 of them).

The index holds, for each fixed path and method, the route Starlette's own scan would pick first, worked out once
from the route list; anything not in it (paths with parameters, 405s, slash redirects, 404s) takes the scan."""

from __future__ import annotations

from starlette.routing import BaseRoute, Match, Route, Router
from starlette.types import Receive, Scope, Send

_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


class IndexedRouter(Router):
    def __init__(self, routes: list[BaseRoute], **kwargs: object) -> None:
        super().__init__(routes, **kwargs)  # type: ignore[arg-type]
        self._fixed: dict[tuple[str, str], Route] | None = None

    def _index(self) -> dict[tuple[str, str], Route]:
        fixed: dict[tuple[str, str], Route] = {}
        paths = {r.path for r in self.routes if isinstance(r, Route) and not r.param_convertors}
        for path in paths:
            for method in _METHODS:
                probe: Scope = {"type": "http", "path": path, "root_path": "", "method": method}
                first = next((r for r in self.routes if r.matches(probe)[0] is Match.FULL), None)
                if isinstance(first, Route) and not first.param_convertors:
                    fixed[(path, method)] = first
        return fixed

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            if self._fixed is None:
                self._fixed = self._index()
            route = self._fixed.get((scope["path"], scope["method"]))
            if route is not None:  # a full match by construction: what `route.matches` would add, without a regex
                scope.setdefault("router", self)
                scope["route"] = route
                scope["endpoint"] = route.endpoint
                scope["path_params"] = dict(scope.get("path_params", {}))
                await route.handle(scope, receive, send)
                return
        await super().app(scope, receive, send)
