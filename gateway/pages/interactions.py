"""Repost, like and bookmark forms (they work without JavaScript) and the bookmarks page.

A form posts `on` (1 to do, 0 to undo) and optionally `next` (else it goes back to the Referer); the action
runs the JSON API's endpoint in-process, waits
briefly for the interactions read model to show it (so the page the browser lands on already does), and answers
303 back to `next`. With scripts the same forms are sent in place (app.js).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from gateway.pages.actions import settle
from gateway.pages.internal import call_api
from gateway.pages.web import checked_form, field, local_path, login_redirect, page, page_route, page_viewer
from gateway.state import state_of

FLAGS = {"like": "liked_by_me", "repost": "reposted_by_me", "bookmark": "bookmarked_by_me"}
SETTLE_S = 2.0


def _back(request: Request, value: str, post_id: str) -> str:
    """Where the form goes back to: `next`, else the page it was sent from (Referer), at the post's card."""
    referer = urlsplit(request.headers.get("referer", ""))
    came_from = local_path(value or (referer.path + (f"?{referer.query}" if referer.query else "")), "")
    if not came_from or came_from.startswith(("/fragments/", "/auth/")):  # a card live updates inserted
        return f"/posts/{post_id}"
    return came_from if "#" in came_from else f"{came_from}#post-{post_id}"


def _action(kind: str) -> Callable[[Request], Awaitable[Response]]:
    async def act(request: Request) -> Response:
        me = await page_viewer(request)
        post_id = request.path_params["post_id"]
        if me is None:
            return login_redirect(request, f"/posts/{post_id}")
        form = await checked_form(request)
        on = field(form, "on") != "0"
        await call_api(request, "POST" if on else "DELETE", f"/api/posts/{post_id}/{kind}")
        store = state_of(request).interactions

        async def applied() -> bool:
            return (await store.of_posts([post_id], me.user_id))[post_id][FLAGS[kind]] == on

        await settle(applied, SETTLE_S)
        return RedirectResponse(_back(request, field(form, "next"), post_id), 303)

    act.__name__ = kind
    act.__doc__ = f"`POST /posts/{{post_id}}/{kind}` (on, next): {kind} (on=1) or undo it (on=0), then `next` (303)."
    return act


@page_route
async def bookmarks_page(request: Request) -> Response:
    """`GET /bookmarks`: the viewer's bookmarked posts, newest bookmark first."""
    me = await page_viewer(request)
    if me is None:
        return login_redirect(request, "/bookmarks")
    cursor = request.query_params.get("cursor")
    data = (await call_api(request, "GET", "/api/bookmarks", query={"cursor": cursor} if cursor else {})).data
    return page(request, "bookmarks.html", me, posts=data["items"], next_cursor=data["next_cursor"])


routes = [
    *(Route(f"/posts/{{post_id}}/{kind}", _action(kind), methods=["POST"]) for kind in FLAGS),
    Route("/bookmarks", bookmarks_page, methods=["GET"]),
]
