"""Error pages (404, 429, 500, ...) in the site layout, for browser requests; gateway/errors.py decides when."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import Response

from gateway.auth.current import Viewer, viewer
from gateway.pages.templating import base_context, render


async def error_page(
    request: Request, status: int, title: str, message: str, headers: Mapping[str, str] | None, *, with_viewer: bool
) -> Response:
    """The error page; the header shows the viewer when that is cheap and safe to find out (not after a crash)."""
    me: Viewer | None = None
    if with_viewer:
        try:
            me = await viewer(request)
        except Exception:  # a stale cookie or an unreachable store must not turn a 404 into a 500
            me = None
    extra = {"status": status, "title": title, "message": message}
    try:
        context = base_context(request, me, **extra)
    except Exception:  # the app state itself is broken (a failed start): the layout without it
        context = {"viewer": None, "csrf_token": "", "path": request.url.path, "dev": False, "live_since": "", **extra}
    return render("error.html", context, status, dict(headers or {}))
