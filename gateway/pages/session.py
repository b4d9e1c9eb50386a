"""Logging in and out from pages: the login page, the dev login form, logout, and resuming an expired session.

Each runs the identity API's own endpoint in-process (`/auth/dev-login`, `/auth/logout`, `/auth/refresh`) and
copies the cookies it sets onto a 303 redirect, so a page login is the API's login, not a second implementation.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from gateway.auth.current import clear_session_cookies
from gateway.errors import InvalidInput, NotFound, TooManyRequests, Unauthorized
from gateway.pages.flash import flash
from gateway.pages.internal import ApiResult, call_api
from gateway.pages.web import checked_form, field, local_path, page, page_route, page_viewer
from gateway.state import state_of


def _redirect_with_cookies(target: str, result: ApiResult | None) -> Response:
    response = RedirectResponse(target, 303)
    if result is None:
        clear_session_cookies(response)
    else:
        response.raw_headers.extend(result.set_cookies)
    return response


@page_route
async def login_page(request: Request) -> Response:
    """`GET /login?next=`: GitHub, and in dev mode a form to log in as any handle."""
    me = await page_viewer(request)
    target = local_path(request.query_params.get("next"))
    if me is not None:
        return RedirectResponse(target, 303)
    return page(request, "login.html", None, next=target, login="", error="")


async def dev_login(request: Request) -> Response:
    """`POST /login` (login, next) in dev mode: the dev login, then `next` (303)."""
    if not state_of(request).settings.dev:
        raise NotFound("Not found.")
    # A visitor has no CSRF cookie yet; the origin check still refuses forms posted from other sites.
    form = await checked_form(request, require_token=False)
    login, target = field(form, "login").strip(), local_path(field(form, "next"))
    try:
        result = await call_api(request, "POST", "/auth/dev-login", json={"login": login})
    except (InvalidInput, TooManyRequests) as exc:
        return page(request, "login.html", None, exc.status, exc.headers, next=target, login=login, error=exc.message)
    response = _redirect_with_cookies(target, result)
    flash(request, response, "logged-in", login)
    return response


async def logout(request: Request) -> Response:
    """`POST /logout`: end the session (its refresh token stops working), clear the cookies, home (303)."""
    me = await page_viewer(request)
    if me is None:
        return _redirect_with_cookies("/", None)
    await checked_form(request)
    response = _redirect_with_cookies("/", await call_api(request, "POST", "/auth/logout"))
    flash(request, response, "logged-out")
    return response


async def resume(request: Request) -> Response:
    """`GET /auth/resume?next=`: trade the refresh cookie (sent to `/auth/*` only) for new cookies, then `next`.

    When the refresh is refused, the identity endpoint clears the cookies, so the page shows a visitor and never
    comes back here in a loop.
    """
    target = local_path(request.query_params.get("next"))
    # A top-level GET navigation: its Referer may name another site (a link followed from elsewhere while the access
    # cookie had expired). The exchange only sets cookies in this browser, so it claims no origin.
    try:
        result = await call_api(request, "POST", "/auth/refresh", headers={"origin": "", "referer": ""})
    except Unauthorized:  # no refresh cookie at all
        return _redirect_with_cookies(target, None)
    return _redirect_with_cookies(target, result)


routes = [
    Route("/login", login_page, methods=["GET"]),
    Route("/login", dev_login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/auth/resume", resume, methods=["GET"]),
]
