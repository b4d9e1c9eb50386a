"""Sessions: dev login, refresh, logout, the viewer (`/api/me`) and the public keys (`/.well-known/jwks.json`).

The GitHub login lives in `gateway/routes/github.py`; both end in `login_user`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from domain.text import HANDLE, is_handle
from gateway.auth.current import (
    REFRESH_COOKIE,
    access_token_for,
    check_origin,
    clear_session_cookies,
    refuse_suspended,
    require_viewer,
    set_session_cookies,
    start_session,
)
from gateway.auth.sessions import SessionError
from gateway.errors import Conflict, JSONResponse, NotFound, Unauthorized
from gateway.openapi import Status, contract
from gateway.requests import RequestModel, body_as
from gateway.routes.account import quarantined, user_id_for
from gateway.state import State, state_of
from schemas.events import UserProfileSynced, UserProfileSyncedData, UserRegistered, UserRegisteredData


async def login_user(state: State, registered: UserRegistered) -> tuple[str, str]:
    """Log a person in; publishes `user-registered` the first time. Returns (access_token, refresh_token).

    For GitHub identities (`github_id` set) a later login whose profile differs from the users row publishes
    `user-profile-synced`: GitHub is the source of the handle and avatar, and of the name until the user picks
    one (the projections rank a chosen name above GitHub's, migration 040).
    """
    data = registered.payload
    await refuse_suspended(state, data.user_id)  # before anything is published for the account
    row = await state.pg.fetchrow("SELECT handle, display_name, avatar_url FROM users WHERE user_id = $1", data.user_id)
    if row is None:
        if await quarantined(state.pg, data.handle):
            raise Conflict(
                f"@{data.handle} belonged to an account deleted less than"
                f" {state.settings.handle_quarantine_days} days ago; it cannot be registered yet.",
                field="login",
            )
        await state.publisher.publish(registered)
    elif data.github_id is not None and _differs(row, data):
        synced = UserProfileSyncedData(
            user_id=data.user_id, handle=data.handle, display_name=data.display_name, avatar_url=data.avatar_url
        )
        await state.publisher.publish(
            UserProfileSynced(actor=data.user_id, correlation_id=registered.correlation_id, payload=synced)
        )
    access, refresh, _ = await start_session(state, data.user_id, data.handle)
    return access, refresh


def _differs(row: Mapping[str, Any], data: UserRegisteredData) -> bool:
    return (row["handle"], row["display_name"], row["avatar_url"]) != (data.handle, data.display_name, data.avatar_url)


def _login(value: str) -> str:
    if not is_handle(value):
        raise ValueError("a GitHub-style login: letters, digits and hyphens, at most 39")
    return value


class DevLogin(RequestModel):
    """`POST /auth/dev-login`: a GitHub-style login (letters, digits and hyphens, at most 39)."""

    login: Annotated[str, AfterValidator(_login)] = Field(json_schema_extra={"pattern": HANDLE.pattern})


class RefreshBody(RequestModel):
    refresh_token: str = Field(min_length=1, max_length=512)


class Tokens(BaseModel):
    access_token: str
    token_type: Literal["Bearer"]
    refresh_token: str


class Jwks(BaseModel):
    keys: list[dict[str, Any]]


@contract(Tokens, body=DevLogin, errors=(403, 404, 409))
async def dev_login(request: Request) -> Response:
    """`POST /auth/dev-login {"login"}`: log in as anyone, registering them if new (only when CHIRP_ENV=dev)."""
    state = state_of(request)
    if not state.settings.dev:
        raise NotFound("Not found.")
    check_origin(request)  # no session yet, so no CSRF token: a foreign page must still not log the browser in
    login = (await body_as(request, DevLogin)).login
    existing = await state.pg.fetchrow("SELECT user_id, handle FROM users WHERE lower(handle) = lower($1)", login)
    if existing:
        user_id, handle = existing["user_id"], existing["handle"]
    else:
        user_id, handle = await user_id_for(state.pg, "dev", login.lower()), login
    registered = UserRegistered(
        actor=user_id,
        payload=UserRegisteredData(user_id=user_id, handle=handle, display_name=handle, avatar_url=""),
    )
    access, refresh = await login_user(state, registered)
    response = JSONResponse({"access_token": access, "token_type": "Bearer", "refresh_token": refresh})
    set_session_cookies(response, state, access, refresh)
    return response


@contract(Tokens, body=RefreshBody, optional_body=True, errors=(401, 403))
async def refresh(request: Request) -> Response:
    """`POST /auth/refresh`: trade the refresh token (cookie or JSON body) for new tokens; reuse revokes."""
    state = state_of(request)
    check_origin(request)
    token = request.cookies.get(REFRESH_COOKIE)
    if not token and request.headers.get("content-type", "").startswith("application/json"):
        token = (await body_as(request, RefreshBody)).refresh_token
    if not isinstance(token, str) or not token:
        raise Unauthorized("No refresh token.")
    try:
        session_id, user_id, new_refresh = await state.sessions.rotate(token)
    except SessionError as exc:
        response = JSONResponse(
            {"error": {"code": "unauthorized", "message": f"Refresh refused ({exc.reason}); log in again."}}, 401
        )
        clear_session_cookies(response)
        return response
    await refuse_suspended(state, user_id)
    access = access_token_for(state, user_id, session_id)
    response = JSONResponse({"access_token": access, "token_type": "Bearer", "refresh_token": new_refresh})
    set_session_cookies(response, state, access, new_refresh)
    return response


@contract(Status, auth="required")
async def logout(request: Request) -> Response:
    """`POST /auth/logout`: end the session (its refresh token stops working) and clear the cookies."""
    viewer = await require_viewer(request)
    await state_of(request).sessions.revoke(viewer.session_id)
    response = JSONResponse({"status": "logged_out"})
    clear_session_cookies(response)
    return response


@contract(Jwks)
async def jwks(request: Request) -> Response:
    """`GET /.well-known/jwks.json`: the public keys that verify access tokens."""
    return JSONResponse(state_of(request).keys.jwks(), headers={"Cache-Control": "public, max-age=300"})


routes = [
    Route("/auth/dev-login", dev_login, methods=["POST"]),
    Route("/auth/refresh", refresh, methods=["POST"]),
    Route("/auth/logout", logout, methods=["POST"]),
    Route("/.well-known/jwks.json", jwks),
]
