"""`GET /@{handle}/followers` and `GET /@{handle}/following`: who follows someone and whom they follow, newest
first, from the follow-list endpoints of the API (the profile's counts link here)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.errors import NotFound
from gateway.pages.internal import call_api
from gateway.pages.web import page, page_route, page_viewer
from gateway.state import state_of

TITLES = {"followers": "Followers", "following": "Following"}


async def _people(request: Request, which: str) -> Response:
    me = await page_viewer(request)
    profile = await state_of(request).users.profile(request.path_params["handle"], None)
    if profile is None or profile["handle"].startswith("~"):
        raise NotFound(f"Nobody here goes by @{request.path_params['handle']}.")
    cursor = request.query_params.get("cursor")
    query = {"cursor": cursor} if cursor else {}
    found = (await call_api(request, "GET", f"/api/users/{profile['handle']}/{which}", query=query)).data
    return page(
        request,
        "people.html",
        me,
        profile=profile,
        which=which,
        title=TITLES[which],
        people=found["items"],
        next_cursor=found.get("next_cursor"),
    )


@page_route
async def followers_page(request: Request) -> Response:
    return await _people(request, "followers")


@page_route
async def following_page(request: Request) -> Response:
    return await _people(request, "following")


routes = [
    Route("/@{handle}/followers", followers_page, methods=["GET"]),
    Route("/@{handle}/following", following_page, methods=["GET"]),
]
