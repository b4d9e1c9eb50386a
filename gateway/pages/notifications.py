"""`GET /notifications`: the viewer's notifications, grouped as the API serves them; viewing them marks them read
(the items keep the read state they had when the page was rendered, so the new ones stand out)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.pages.internal import call_api
from gateway.pages.web import login_redirect, page, page_route, page_viewer
from gateway.read_marks import mark_read
from gateway.state import state_of

PAGE_SIZE = "30"


@page_route
async def notifications_page(request: Request) -> Response:
    me = await page_viewer(request)
    if me is None:
        return login_redirect(request, "/notifications")
    cursor = request.query_params.get("cursor")
    query = {"limit": PAGE_SIZE, **({"cursor": cursor} if cursor else {})}
    found = (await call_api(request, "GET", "/api/notifications", query=query)).data
    if request.scope.get("chirp_unread") and found["items"] and not cursor:
        await mark_read(state_of(request), me.user_id, found["items"][0]["id"])
        request.scope["chirp_unread"] = 0  # the bell on this page: they are being read
    return page(request, "notifications.html", me, items=found["items"], next_cursor=found.get("next_cursor"))


routes = [Route("/notifications", notifications_page, methods=["GET"])]
