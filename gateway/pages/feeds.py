"""Reading pages: home, a post with its replies, a profile, a tag, and the post fragments live updates insert."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from domain.text import tag_key
from gateway.auth.current import Viewer
from gateway.errors import NotFound
from gateway.interactions import with_interactions
from gateway.pages.explore import trending_context
from gateway.pages.forms import Composer
from gateway.pages.internal import MissingEndpoint, call_api
from gateway.pages.templating import base_context, render
from gateway.pages.web import page, page_route, page_viewer
from gateway.post_objects import post_json
from gateway.requests import path_param
from gateway.state import state_of

POSTED_COOKIE = "chirp_posted"
POSTED_TTL_S = 60
SUGGESTED = 3  # people in the home page's "Who to follow" box


def _cursor(request: Request) -> dict[str, str]:
    cursor = request.query_params.get("cursor")
    return {"cursor": cursor} if cursor else {}


async def _list(request: Request, path: str) -> tuple[list[dict[str, Any]], str | None]:
    """A page of posts from a list endpoint of the API (`{"items", "next_cursor"}`), continuing at `?cursor`."""
    data = (await call_api(request, "GET", path, query=_cursor(request))).data
    return data["items"], data.get("next_cursor")


def remember_posted(response: Response, post_id: str) -> None:
    """Mark the post the viewer just wrote, so the page they land on shows it even before the timeline has it."""
    response.set_cookie(POSTED_COOKIE, post_id, max_age=POSTED_TTL_S, path="/", httponly=True, samesite="lax")


async def _with_own_post(request: Request, me: Viewer, posts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # The posts read model has a new post once `Prefer: wait` returns; the home timeline is fanned out by
    # another consumer a moment later. Merge the viewer's own latest post so posting feels instant.
    post_id = request.cookies.get(POSTED_COOKIE)
    if not post_id or request.query_params.get("cursor") or any(p["id"] == post_id for p in posts):
        return posts
    found = await state_of(request).posts.get(post_id)
    if found is None or found.author_id != me.user_id or (posts and found.id < posts[-1]["id"]):
        return posts
    return sorted([post_json(found), *posts], key=lambda p: p["id"], reverse=True)


async def quote_composer(request: Request, quote_of: str) -> Composer:
    """The home composer quoting a post (embedded under the text; the Quote action), plain when the post is gone."""
    found = await state_of(request).posts.get(quote_of)
    if found is None:
        return Composer(next="/")
    quoted = {k: v for k, v in post_json(found).items() if k in ("id", "author", "html", "text", "created_at")}
    return Composer(next="/", quote_of=found.id, quoted=quoted)


async def _suggestions(request: Request) -> list[dict[str, Any]]:
    """A few people to follow ("Who to follow"), from `GET /api/suggestions`; none when it cannot answer."""
    result = await call_api(request, "GET", "/api/suggestions", query={"limit": str(SUGGESTED)})
    return result.data["items"] if result.status == 200 and result.data else []


async def home_context(request: Request, me: Viewer | None, form: Composer | None = None) -> dict[str, Any]:
    """Home: the viewer's timeline (or everyone's posts with `?feed=all`, and always for visitors)."""
    feed = "home" if me and request.query_params.get("feed") != "all" else "all"
    if feed == "home":
        try:
            posts, next_cursor = await _list(request, "/api/timeline")
        except MissingEndpoint:
            feed = "all"
    if feed == "all":
        posts, next_cursor = await _list(request, "/api/posts")
    if me is not None:
        posts = await _with_own_post(request, me, posts)
    if form is None and (quote_of := request.query_params.get("quote_of")):  # the Quote action: embed it
        form = await quote_composer(request, quote_of)
    return {
        **await trending_context(request, shown=5),
        "suggestions": await _suggestions(request) if me is not None else [],
        "feed": feed,
        "live_feed": feed,
        "posts": posts,
        "next_cursor": next_cursor,
        "form": form or Composer(next="/"),
    }


@page_route
async def home(request: Request) -> Response:
    """`GET /`."""
    me = await page_viewer(request)
    return page(request, "home.html", me, **await home_context(request, me))


async def post_context(
    request: Request, me: Viewer | None, post_id: str, form: Composer | None = None
) -> dict[str, Any]:
    """A post, the conversation above it (root first), its author's card and its reply tree."""
    state = state_of(request)
    found = await state.posts.get(post_id)
    if found is None:
        raise NotFound("This post does not exist or was deleted.")
    shown = await with_interactions(request, [post_json(found)])
    author = await state.users.profile(found.handle, me.user_id if me else None) if found.handle else None
    thread = (await call_api(request, "GET", f"/api/posts/{post_id}/thread", query=_cursor(request))).data
    return {
        "post": shown[0],
        "ancestors": thread["ancestors"],
        "author": author,
        "replies": thread["replies"],
        "next_cursor": thread["more"],
        "form": form or Composer(next=f"/posts/{post_id}", reply_to=post_id),
    }


@page_route
async def post_page(request: Request) -> Response:
    """`GET /posts/{post_id}`."""
    me = await page_viewer(request)
    post_id = path_param(request, "post_id", "No such post.")
    return page(request, "post.html", me, **await post_context(request, me, post_id))


@page_route
async def profile_page(request: Request) -> Response:
    """`GET /@{handle}`: the profile card and the person's posts."""
    me = await page_viewer(request)
    handle = path_param(request, "handle", f"Nobody here goes by @{request.path_params['handle']}.")
    users = state_of(request).users
    profile = await users.profile(handle, me.user_id if me else None)
    if profile is None or profile["handle"].startswith("~"):
        raise NotFound(f"Nobody here goes by @{handle}.")
    posts, next_cursor = await _list(request, f"/api/users/{profile['handle']}/posts")
    user_id = await users.user_id(profile["handle"])
    profile.update(muted_by_me=False, blocked_by_me=False)
    if me is not None and user_id is not None:
        state = await state_of(request).relations.state(me.user_id, user_id)
        profile.update(muted_by_me=state["muted"], blocked_by_me=state["blocked"])
    return page(request, "profile.html", me, profile=profile, user_id=user_id, posts=posts, next_cursor=next_cursor)


@page_route
async def tag_page(request: Request) -> Response:
    """`GET /tags/{tag}`: the tag's figures (when the tags API is there) and its posts."""
    me = await page_viewer(request)
    tag = tag_key(request.path_params["tag"])
    posts, next_cursor = await _list(request, f"/api/tags/{tag}/posts")
    try:
        info = (await call_api(request, "GET", f"/api/tags/{tag}")).data
    except (MissingEndpoint, NotFound):
        info = None
    return page(request, "tag.html", me, tag=tag, info=info, posts=posts, next_cursor=next_cursor)


async def post_fragment(request: Request) -> Response:
    """`GET /fragments/posts/{post_id}`: one post card, for the live updates to insert."""
    me = await page_viewer(request)
    found = await state_of(request).posts.get(path_param(request, "post_id", "No such post."))
    if found is None:
        raise NotFound("No such post.")
    [post] = await with_interactions(request, [post_json(found)])
    return render("fragment_post.html", base_context(request, me, post=post))


routes = [
    Route("/", home, methods=["GET"]),
    Route("/posts/{post_id}", post_page, methods=["GET"]),
    Route("/@{handle}", profile_page, methods=["GET"]),
    Route("/tags/{tag}", tag_page, methods=["GET"]),
    Route("/fragments/posts/{post_id}", post_fragment, methods=["GET"]),
]
