"""Who is asking: the viewer behind a request's Bearer token or access cookie, and the login that makes one.

Cookies ride along on cross-site requests, so a cookie-authenticated unsafe request must also prove it comes from
our own pages: a CSRF token equal to the `chirp_csrf` cookie (header `X-CSRF-Token` or form field `csrf_token`)
and, when the browser sends one, a same-origin `Origin` (or `Referer`). Bearer requests are exempt: another site
cannot make a browser send our `Authorization` header.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript
from starlette.requests import Request
from starlette.responses import Response

from gateway.auth.csrf import csrf_ok, new_csrf_token, origin_ok
from gateway.auth.tokens import Claims, TokenError, issue_access_token, www_authenticate
from gateway.errors import Forbidden, Unauthorized
from gateway.state import State, state_of
from store.reports import SUSPENDED_KEY

ACCESS_COOKIE = "chirp_access"
REFRESH_COOKIE = "chirp_refresh"
CSRF_COOKIE = "chirp_csrf"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_CSRF_VERIFIED = "chirp.csrf_verified"
_HANDLE_KEY = "chirp:handle:{}"


class CsrfError(Forbidden):
    """A cookie-authenticated unsafe request without a matching CSRF token or from another origin."""

    code = "csrf"


@dataclass(frozen=True, slots=True)
class Viewer:
    user_id: str
    handle: str
    session_id: str
    via_cookie: bool = False


def bearer_or_cookie(request: Request) -> tuple[str | None, bool]:
    """The access token of a request and whether it came from the cookie (browsers) or a header (API clients)."""
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip(), False
    return request.cookies.get(ACCESS_COOKIE), True


async def viewer(request: Request) -> Viewer | None:
    """The logged-in viewer, or None for anonymous requests; a bad or revoked token raises Unauthorized."""
    if "viewer" in request.scope:
        return request.scope["viewer"]
    token, via_cookie = bearer_or_cookie(request)
    found = None
    if token:
        found, _ = await _resolve(state_of(request), token, via_cookie)
    request.scope["viewer"] = found
    return found


async def require_viewer(request: Request) -> Viewer:
    """The logged-in viewer; 401 for anonymous requests, 403 (`csrf`) for cookie ones failing the CSRF check."""
    found = await viewer(request)
    if found is None:
        raise Unauthorized("Log in first.", headers={"WWW-Authenticate": "Bearer"})
    if found.via_cookie and request.method in UNSAFE_METHODS and not request.scope.get(_CSRF_VERIFIED):
        await check_csrf(request)
    return found


async def require_viewer_with(
    request: Request, queue: Callable[[Pipeline, str], object], scripts: Iterable[AsyncScript] = ()
) -> tuple[Viewer, list[Any]]:
    """`require_viewer`, and the replies to the Redis commands `queue` adds for the viewer's user id (scripts by
    `chirp.redis_client.evalsha_of`), sent in the same round trip as the session check: a read path's first Redis
    step costs no round trip of its own. The replies are returned only once the viewer is let in."""
    state = state_of(request)
    token, via_cookie = bearer_or_cookie(request)
    if "viewer" in request.scope or not token:
        me = await require_viewer(request)
        replies = await state.round_trips.pipelined(lambda pipe: queue(pipe, me.user_id), scripts)
    else:
        request.scope["viewer"], replies = await _resolve(state, token, via_cookie, queue, scripts)
        me = await require_viewer(request)
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return me, replies


async def viewer_and(
    request: Request, queue: Callable[[Pipeline, str | None], object], scripts: Iterable[AsyncScript] = ()
) -> tuple[Viewer | None, list[Any]]:
    """The viewer (None for anonymous requests and bad or ended tokens, whose endpoint answers their 401 or 403)
    and the replies to the Redis commands `queue` adds for the viewer's user id (None when no token names one),
    sent in the same round trip as the session check: the rate limiter's spending costs no round trip of its own.
    Unlike `require_viewer_with`, the commands run whatever the session check finds."""
    state = state_of(request)
    token, via_cookie = bearer_or_cookie(request)
    if "viewer" in request.scope or not token:
        found = await viewer(request)
        return found, await state.round_trips.pipelined(
            lambda pipe: queue(pipe, found.user_id if found else None), scripts
        )
    try:
        claims = _claims(state, token)
    except Unauthorized:
        return None, await state.round_trips.pipelined(lambda pipe: queue(pipe, None), scripts)
    replies = await state.round_trips.pipelined(lambda pipe: _queue_checks(pipe, state, claims, queue), scripts)
    try:
        request.scope["viewer"] = _viewer_of(claims, replies, via_cookie)
    except (Unauthorized, Forbidden):
        return None, replies[3:]  # not kept: the endpoint resolves the token again and answers
    return request.scope["viewer"], replies[3:]


def mark_csrf_verified(request: Request) -> None:
    """Record that this request passed a CSRF check (copies of its scope, e.g. in-process API calls, inherit it)."""
    request.scope[_CSRF_VERIFIED] = True


def check_origin(request: Request) -> None:
    """403 (`csrf`) when the request's `Origin` (else `Referer`) names another site; absent headers pass."""
    public_url = state_of(request).settings.public_url
    claimed = request.headers.get("origin") or request.headers.get("referer")
    if not origin_ok(claimed, public_url):
        raise CsrfError("This request came from another site.")


async def check_csrf(request: Request) -> None:
    """403 (`csrf`) unless the request is same-origin and echoes the CSRF cookie in the header or form."""
    check_origin(request)
    token = request.headers.get(CSRF_HEADER)
    if token is None and request.headers.get("content-type", "").startswith(_FORM_TYPES):
        field = (await request.form()).get(CSRF_FIELD)  # cached on the request: the endpoint reads it again
        token = field if isinstance(field, str) else None
    if not csrf_ok(token, request.cookies.get(CSRF_COOKIE)):
        raise CsrfError("Missing or wrong CSRF token; reload the page and try again.")
    mark_csrf_verified(request)


def _claims(state: State, token: str) -> Claims:
    """The claims of a token whose signature and times are good; Unauthorized otherwise (no I/O)."""
    settings = state.settings
    try:
        return state.verified_tokens.verify(
            state.keys,
            token,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            leeway_s=settings.jwt_leeway_seconds,
        )
    except TokenError as exc:
        raise Unauthorized(exc.message, headers={"WWW-Authenticate": www_authenticate(exc.reason)}) from None


def _queue_checks(
    pipe: Pipeline, state: State, claims: Claims, queue: Callable[[Pipeline, str], object] | None = None
) -> None:
    """The session and suspension checks of `claims` (three replies), then what `queue` adds for its user id."""
    pipe.exists(state.sessions.session_key(claims.sid))
    pipe.get(_HANDLE_KEY.format(claims.sub))
    pipe.sismember(SUSPENDED_KEY, claims.sub)
    if queue is not None:
        queue(pipe, claims.sub)


def _viewer_of(claims: Claims, replies: list[Any], via_cookie: bool) -> Viewer:
    """The viewer the checks' replies let in; Unauthorized for an ended session, Forbidden for a suspension."""
    for reply in replies[:3]:
        if isinstance(reply, Exception):
            raise reply
    active, handle, suspended = replies[:3]
    if not active:
        raise Unauthorized("This session has ended; log in again.", headers={"WWW-Authenticate": "Bearer"})
    if suspended:
        raise Forbidden("This account is suspended.")
    return Viewer(claims.sub, handle or "", claims.sid, via_cookie)


async def _resolve(
    state: State,
    token: str,
    via_cookie: bool,
    queue: Callable[[Pipeline, str], object] | None = None,
    scripts: Iterable[AsyncScript] = (),
) -> tuple[Viewer, list[Any]]:
    """The viewer a token names, checked against its session and the suspended accounts (one Redis round trip,
    with what `queue` adds for its user id: their replies come second)."""
    claims = _claims(state, token)
    replies = await state.round_trips.pipelined(lambda pipe: _queue_checks(pipe, state, claims, queue), scripts)
    return _viewer_of(claims, replies, via_cookie), replies[3:]


async def refuse_suspended(state: State, user_id: str) -> None:
    """Forbidden for an account the operators suspended (its logins and refreshes are refused)."""
    if await state.redis.sismember(SUSPENDED_KEY, user_id):
        raise Forbidden("This account is suspended.")


async def start_session(state: State, user_id: str, handle: str) -> tuple[str, str, str]:
    """Open a session for a user who just logged in; returns (access_token, refresh_token, session_id)."""
    await refuse_suspended(state, user_id)
    session_id, refresh = await state.sessions.create(user_id)
    await state.redis.set(_HANDLE_KEY.format(user_id), handle, ex=state.settings.refresh_token_days * 86400)
    return access_token_for(state, user_id, session_id), refresh, session_id


def access_token_for(state: State, user_id: str, session_id: str) -> str:
    settings = state.settings
    return issue_access_token(
        state.keys,
        sub=user_id,
        session_id=session_id,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl_seconds=settings.access_token_minutes * 60,
    )


def set_session_cookies(response: Response, state: State, access: str, refresh: str) -> None:
    """Browsers keep the tokens in HttpOnly cookies; the CSRF cookie is readable so scripts can echo it."""
    secure = state.settings.public_url.startswith("https://")
    access_age, refresh_age = state.settings.access_token_minutes * 60, state.settings.refresh_token_days * 86400
    response.set_cookie(
        ACCESS_COOKIE, access, max_age=access_age, path="/", httponly=True, samesite="lax", secure=secure
    )
    response.set_cookie(
        REFRESH_COOKIE, refresh, max_age=refresh_age, path="/auth", httponly=True, samesite="lax", secure=secure
    )
    response.set_cookie(CSRF_COOKIE, new_csrf_token(), path="/", samesite="lax", secure=secure)


def clear_session_cookies(response: Response) -> None:
    response.delete_cookie(ACCESS_COOKIE, path="/")
    response.delete_cookie(REFRESH_COOKIE, path="/auth")
    response.delete_cookie(CSRF_COOKIE, path="/")
