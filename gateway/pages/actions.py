"""Form actions (they work without JavaScript): post and reply, delete, follow and unfollow, edit the profile.

Each checks the form's CSRF token, runs the JSON API's endpoint in-process (same validation, same events), and
answers 303 back to the page with a status message saying it is done (`flash.py`); a refused input re-renders
that page with the error next to the field and the text kept. Deleting asks first on a page of its own (scripts
ask with a dialog instead). Commands the API applies asynchronously (follow, profile edits) are awaited briefly
on the read model, so the page the browser lands on already shows the change.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from domain.markdown import render_post
from gateway.auth.csrf import csrf_ok
from gateway.auth.current import CSRF_COOKIE, clear_session_cookies, require_viewer
from gateway.errors import Conflict, Forbidden, InvalidInput, JSONResponse, NotFound, TooManyRequests
from gateway.openapi import contract
from gateway.pages.feeds import home_context, post_context, remember_posted
from gateway.pages.flash import flash
from gateway.pages.forms import MAX_POST_CHARS, Composer
from gateway.pages.internal import call_api
from gateway.pages.web import checked_form, field, local_path, login_redirect, page, page_route, page_viewer
from gateway.post_objects import post_json
from gateway.requests import RequestModel, body_as
from gateway.state import state_of

SETTLE_S = 2.0  # how long an action waits for its event to reach the read model before redirecting anyway


async def settle(check: Callable[[], Awaitable[bool]], timeout: float = SETTLE_S) -> bool:
    """Poll `check` until it holds or `timeout` passes (read-your-writes for the page redirected to)."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def compose(request: Request) -> Response:
    """`POST /compose` (body, reply_to?, next, idempotency_key): publish the post, back to `next` (303)."""
    me = await page_viewer(request)
    if me is None:
        return login_redirect(request)
    form = await checked_form(request)
    reply_to = field(form, "reply_to") or None
    default_next = f"/posts/{reply_to}" if reply_to else "/"
    composer = Composer(
        next=local_path(field(form, "next"), default_next),
        reply_to=reply_to,
        body=field(form, "body"),
        idempotency_key=field(form, "idempotency_key") or Composer().idempotency_key,
        quote_of=field(form, "quote_of") or None,
    )
    payload: dict[str, Any] = {"body": composer.body}
    if reply_to:
        payload["reply_to"] = reply_to
    if composer.quote_of:
        payload["quote_of"] = composer.quote_of
    headers = {"Prefer": "wait", "Idempotency-Key": composer.idempotency_key}
    try:
        result = await call_api(request, "POST", "/api/posts", json=payload, headers=headers)
    except (InvalidInput, TooManyRequests, Conflict) as exc:
        composer.error = exc.message
        if reply_to and exc.field != "reply_to":
            context = await post_context(request, me, reply_to, composer)
            return page(request, "post.html", me, exc.status, exc.headers, **context)
        return page(request, "home.html", me, exc.status, exc.headers, **await home_context(request, me, composer))
    post_id = result.data["id"]
    if "preference-applied" not in result.response.headers:  # not visible within the API's wait: a little longer
        posts = state_of(request).posts
        await settle(lambda: posts.exists(post_id))
    anchor = f"#post-{post_id}" if reply_to else ""
    response = RedirectResponse(composer.next + anchor, 303)
    remember_posted(response, post_id)
    flash(request, response, "replied" if reply_to else "posted")
    return response


def _after_delete(request: Request, post_id: str, value: str | None) -> tuple[str, str]:
    """(where Cancel goes, where a done delete goes): the page the viewer came from; home instead of the post."""
    referer = urlsplit(request.headers.get("referer", ""))
    came_from = local_path(value or (referer.path + (f"?{referer.query}" if referer.query else "")), "/")
    if came_from.startswith("/auth/"):
        came_from = "/"
    gone = came_from.split("?")[0].split("#")[0] in (f"/posts/{post_id}", f"/posts/{post_id}/delete")
    return came_from, "/" if gone else came_from


@page_route
async def confirm_delete(request: Request) -> Response:
    """`GET /posts/{post_id}/delete`: asks before deleting (the card's Delete link, when scripts do not ask)."""
    me = await page_viewer(request)
    post_id = request.path_params["post_id"]
    if me is None:
        return login_redirect(request, f"/posts/{post_id}/delete")
    found = await state_of(request).posts.get(post_id)
    if found is None:
        raise NotFound("This post does not exist or was deleted.")
    if found.author_id != me.user_id:
        raise Forbidden("Only its author can delete a post.")
    back, after = _after_delete(request, post_id, request.query_params.get("next"))
    return page(request, "confirm_delete.html", me, post=post_json(found), back=back, next=after)


async def delete(request: Request) -> Response:
    """`POST /posts/{post_id}/delete` (next) by its author: delete, then `next` or home (303) saying so."""
    if await page_viewer(request) is None:
        return login_redirect(request)
    form = await checked_form(request)
    post_id = request.path_params["post_id"]
    result = await call_api(request, "DELETE", f"/api/posts/{post_id}", headers={"Prefer": "wait"})
    if "preference-applied" not in result.response.headers:
        posts = state_of(request).posts

        async def gone() -> bool:
            return not await posts.exists(post_id)

        await settle(gone)
    response = RedirectResponse(_after_delete(request, post_id, field(form, "next"))[1], 303)
    flash(request, response, "deleted")
    return response


async def _follow(request: Request, following: bool) -> Response:
    me = await page_viewer(request)
    handle = request.path_params["handle"]
    if me is None:
        return login_redirect(request, f"/@{handle}")
    form = await checked_form(request)
    await call_api(request, "POST" if following else "DELETE", f"/api/users/{handle}/follow")
    users = state_of(request).users

    async def applied() -> bool:
        profile = await users.profile(handle, me.user_id)
        return profile is None or profile["followed_by_me"] == following

    await settle(applied)
    response = RedirectResponse(local_path(field(form, "next"), f"/@{handle}"), 303)
    flash(request, response, "followed" if following else "unfollowed", handle)
    return response


async def follow(request: Request) -> Response:
    """`POST /@{handle}/follow`."""
    return await _follow(request, True)


async def unfollow(request: Request) -> Response:
    """`POST /@{handle}/unfollow`."""
    return await _follow(request, False)


@page_route
async def settings_page(request: Request) -> Response:
    """`GET /settings`: the profile form, filled in."""
    me = await page_viewer(request)
    if me is None:
        return login_redirect(request, "/settings")
    users = state_of(request).users
    profile: dict = {}

    async def projected() -> bool:  # a person who just signed up may open this page before their profile lands
        nonlocal profile
        profile = await users.profile(me.handle, me.user_id) or {}
        return bool(profile)

    await settle(projected)
    values = {"display_name": profile.get("display_name") or me.handle, "bio": profile.get("bio", "")}
    return page(request, "settings.html", me, values=values, errors={}, **_leaving(request))


def _leaving(request: Request) -> dict[str, Any]:
    """What the settings page says about deleting an account."""
    settings = state_of(request).settings
    delay = settings.erasure_delay_s
    readable = (
        f"{delay / 86400:g} days"
        if delay >= 86400
        else f"{delay / 3600:g} hours"
        if delay >= 3600
        else f"{delay:g} seconds"
    )
    return {"erasure_delay": readable, "quarantine_days": settings.handle_quarantine_days}


async def delete_account(request: Request) -> Response:
    """`POST /settings/delete` (confirm): delete the account (`DELETE /api/me`), then the home page, logged out."""
    me = await page_viewer(request)
    if me is None:
        return login_redirect(request, "/settings")
    form = await checked_form(request)
    try:
        await call_api(request, "DELETE", "/api/me", json={"confirm": field(form, "confirm")})
    except InvalidInput as exc:
        users = state_of(request).users
        profile = await users.profile(me.handle, me.user_id) or {}
        values = {"display_name": profile.get("display_name") or me.handle, "bio": profile.get("bio", "")}
        errors = {"confirm": exc.message}
        return page(request, "settings.html", me, 422, values=values, errors=errors, **_leaving(request))
    response = RedirectResponse("/", 303)
    clear_session_cookies(response)
    flash(request, response, "account-deleted")
    return response


async def save_settings(request: Request) -> Response:
    """`POST /settings` (display_name, bio): publish the edit, wait for it to show, then the profile (303)."""
    me = await page_viewer(request)
    if me is None:
        return login_redirect(request, "/settings")
    form = await checked_form(request)
    values = {"display_name": field(form, "display_name"), "bio": field(form, "bio")}
    try:
        await call_api(request, "PATCH", "/api/me", json=values)
    except InvalidInput as exc:
        errors = {exc.field if exc.field in values else "form": exc.message}
        return page(request, "settings.html", me, 422, values=values, errors=errors, **_leaving(request))
    users = state_of(request).users
    wanted = {k: v.strip() for k, v in values.items()}

    async def applied() -> bool:
        profile = await users.profile(me.handle, me.user_id)
        return profile is not None and all(profile[k] == v for k, v in wanted.items())

    await settle(applied)
    response = RedirectResponse(f"/@{me.handle}", 303)
    flash(request, response, "saved")
    return response


class PreviewBody(RequestModel):
    body: str = Field(max_length=2 * MAX_POST_CHARS)


class Preview(BaseModel):
    html: str


@contract(Preview, body=PreviewBody, auth="required")
async def preview(request: Request) -> Response:
    """`POST /api/preview {"body"}` → `{"html"}`: the composer's live preview, rendered as the post will be."""
    me = await require_viewer(request)
    if me.via_cookie and not csrf_ok(request.headers.get("x-csrf-token"), request.cookies.get(CSRF_COOKIE)):
        raise Forbidden("Missing or wrong X-CSRF-Token header.")
    body = (await body_as(request, PreviewBody)).body
    return JSONResponse({"html": render_post(body).html})


routes = [
    Route("/compose", compose, methods=["POST"]),
    Route("/posts/{post_id}/delete", confirm_delete, methods=["GET"]),
    Route("/posts/{post_id}/delete", delete, methods=["POST"]),
    Route("/@{handle}/follow", follow, methods=["POST"]),
    Route("/@{handle}/unfollow", unfollow, methods=["POST"]),
    Route("/settings", settings_page, methods=["GET"]),
    Route("/settings", save_settings, methods=["POST"]),
    Route("/settings/delete", delete_account, methods=["POST"]),
    Route("/api/preview", preview, methods=["POST"]),
]
