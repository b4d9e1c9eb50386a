"""Mute and block from the web (forms that work without JavaScript): `POST /@{handle}/mute|unmute|block|unblock`
and the settings pages listing whom the viewer mutes and blocks, `GET /settings/mutes` and `/settings/blocks`.

Each action checks the form's CSRF token, runs the JSON API's endpoint in-process (same rules, same events), waits
briefly for the relations model to show it, and answers 303 back to `next` (the profile by default) saying so.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from gateway.pages.actions import settle
from gateway.pages.flash import flash
from gateway.pages.internal import call_api
from gateway.pages.web import checked_form, field, local_path, login_redirect, page, page_route, page_viewer
from gateway.relations import relations
from gateway.state import state_of
from store.relations import Kind

Endpoint = Callable[[Request], Awaitable[Response]]
TITLES = {"mute": "Muted accounts", "block": "Blocked accounts"}
# (kind, on) -> the action's path segment and the status message (flash.py) it leaves
ACTIONS: dict[tuple[Kind, bool], str] = {
    ("mute", True): "mute",
    ("mute", False): "unmute",
    ("block", True): "block",
    ("block", False): "unblock",
}
DONE = {"mute": "muted", "unmute": "unmuted", "block": "blocked", "unblock": "unblocked"}


def _action(kind: Kind, on: bool) -> Endpoint:
    name = ACTIONS[kind, on]

    async def act(request: Request) -> Response:
        me = await page_viewer(request)
        handle = request.path_params["handle"]
        if me is None:
            return login_redirect(request, f"/@{handle}")
        form = await checked_form(request)
        await call_api(request, "POST" if on else "DELETE", f"/api/users/{handle}/{kind}")
        target = await state_of(request).users.user_id(handle)

        async def applied() -> bool:
            state = await relations(request).state(me.user_id, target or "")
            return state["muted" if kind == "mute" else "blocked"] == on

        await settle(applied)
        response = RedirectResponse(local_path(field(form, "next"), f"/@{handle}"), 303)
        flash(request, response, DONE[name], handle)
        return response

    act.__name__ = name
    act.__doc__ = f"`POST /@{{handle}}/{name}`."
    return act


def _listing(kind: Kind) -> Endpoint:
    @page_route
    async def listing(request: Request) -> Response:
        me = await page_viewer(request)
        if me is None:
            return login_redirect(request, f"/settings/{kind}s")
        cursor = request.query_params.get("cursor")
        query = {"cursor": cursor} if cursor else {}
        found = (await call_api(request, "GET", f"/api/me/{kind}s", query=query)).data
        people, after = found["items"], found.get("next_cursor")
        return page(request, "relations.html", me, kind=kind, title=TITLES[kind], people=people, next_cursor=after)

    listing.__name__ = f"{kind}s_page"
    listing.__doc__ = f"`GET /settings/{kind}s`: whom the viewer {kind}s, newest first, each with its undo button."
    return listing


routes = [
    *(Route(f"/@{{handle}}/{name}", _action(kind, on), methods=["POST"]) for (kind, on), name in ACTIONS.items()),
    *(Route(f"/settings/{kind}s", _listing(kind), methods=["GET"]) for kind in ("mute", "block")),
]
