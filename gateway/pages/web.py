"""What every page handler shares: the viewer (tolerant of stale cookies), form CSRF checks, safe redirects."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlsplit

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gateway.auth.csrf import csrf_ok, origin_ok
from gateway.auth.current import ACCESS_COOKIE, CSRF_COOKIE, Viewer, mark_csrf_verified, viewer
from gateway.errors import ApiError, Forbidden, Unauthorized
from gateway.pages.flash import clear_flash, flash_text
from gateway.pages.templating import base_context, render
from gateway.state import state_of
from store.notifications import unread_key

MAX_FORM_BYTES = 64 * 1024


class ResumeSession(Exception):
    """The access cookie is gone or stale while the browser may still hold a refresh cookie (path `/auth`)."""


async def page_viewer(request: Request) -> Viewer | None:
    """The logged-in viewer of a page, None for visitors.

    The access cookie lives 15 minutes; the refresh cookie is only sent to `/auth/*`. A page request whose
    access cookie expired (the CSRF cookie, set at login and cleared at logout, is still there) or was refused
    raises `ResumeSession` for GETs, which sends the browser through `/auth/resume` and back.
    """
    try:
        found = await viewer(request)
    except Unauthorized:
        found = None
        request.scope["viewer"] = None
        if request.method == "GET":
            raise ResumeSession() from None
    if (
        found is None
        and request.method == "GET"
        and CSRF_COOKIE in request.cookies
        and not request.cookies.get(ACCESS_COOKIE)
    ):
        raise ResumeSession()
    if found is not None:  # the bell in the nav (one Redis read)
        request.scope["chirp_unread"] = await state_of(request).redis.zcard(unread_key(found.user_id))
    return found


def resume_redirect(request: Request) -> Response:
    """Send the browser to refresh its session, then back to this page."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/auth/resume?next={quote(target, safe='')}", 303)


def local_path(value: Any, default: str = "/") -> str:
    """`value` if it is a path on this site (no scheme, no host, no `//` or `\\` tricks), else `default`."""
    if not isinstance(value, str) or not value.startswith("/") or value.startswith(("//", "/\\")):
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or any(c in value for c in "\r\n\t\\"):
        return default
    return value


class CsrfRefused(Forbidden):
    """A form came without the CSRF token of this browser, or from another origin."""


async def checked_form(request: Request, *, require_token: bool = True) -> FormData:
    """The submitted form once its origin and CSRF token check out (`csrf_token` echoing the `chirp_csrf` cookie)."""
    if len(await request.body()) > MAX_FORM_BYTES:
        raise ApiError("The form is too large.")
    settings = state_of(request).settings
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin_ok(origin, settings.public_url):
        raise CsrfRefused("This form was sent from another site.")
    form = await request.form()
    token = form.get("csrf_token")
    if require_token:
        if not csrf_ok(token if isinstance(token, str) else None, request.cookies.get(CSRF_COOKIE)):
            raise CsrfRefused("This form has expired. Reload the page and try again.")
        mark_csrf_verified(request)  # the API endpoints this action then runs in-process need not check again
    return form


def field(form: FormData, name: str) -> str:
    """A text field of a form ('' when absent); line endings normalised as browsers may send CRLF."""
    value = form.get(name)
    return value.replace("\r\n", "\n") if isinstance(value, str) else ""


def page(
    request: Request,
    template: str,
    me: Viewer | None,
    status: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> Response:
    """Render a page in the site layout for `me`, with the status message a form's redirect left (once)."""
    response = render(template, base_context(request, me, flash=flash_text(request), **context), status, headers)
    clear_flash(request, response)
    return response


def login_redirect(request: Request, back: str | None = None) -> Response:
    """Visitors who try something that needs an account go to the login page, then back."""
    referer = urlsplit(request.headers.get("referer", ""))
    target = local_path(back or referer.path)
    return RedirectResponse(f"/login?next={quote(target, safe='')}", 303)


def page_route(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """A GET page handler that sends a browser with an expired access cookie through `/auth/resume` first."""

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except ResumeSession:
            return resume_redirect(request)

    return endpoint
