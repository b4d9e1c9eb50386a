"""Interactions: like, repost and bookmark a post (`POST`/`DELETE /api/posts/{id}/like|repost|bookmark`, 202),
and the pages they make: `GET /api/bookmarks` (the viewer's own, newest bookmark first), `GET
/api/posts/{id}/likes|reposts` (users) and `/quotes` (posts).

Writes publish one event on the kind's topic (keyed by the user, so one user's like and unlike of a post stay in
order); the interactions consumer applies them idempotently, so liking twice is one like and unliking what was not
liked changes nothing. Unknown or deleted posts are 404.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.auth.current import require_viewer
from gateway.cursors import encode_cursor, page_params
from gateway.errors import InvalidInput, JSONResponse, NotFound
from gateway.interactions import with_interactions
from gateway.routes.posts import post_json
from gateway.state import state_of
from schemas.events import InteractionData, PostBookmark, PostLike, PostRepost
from store.interactions import Keyset, PostgresInteractions
from store.posts import PostgresPosts

# kind in the URL -> (event model, type when done, type when undone)
KINDS: dict[str, tuple[type[PostLike | PostRepost | PostBookmark], str, str]] = {
    "like": (PostLike, "post-liked", "post-unliked"),
    "repost": (PostRepost, "post-reposted", "post-unreposted"),
    "bookmark": (PostBookmark, "post-bookmarked", "post-unbookmarked"),
}


async def _existing_post(request: Request) -> str:
    post_id = request.path_params["post_id"]
    if not await PostgresPosts(state_of(request).pg).exists(post_id):
        raise NotFound("No such post.")
    return post_id


def _writer(kind: str, undo: bool) -> Callable[[Request], Awaitable[Response]]:
    model, done, undone = KINDS[kind]

    async def write(request: Request) -> Response:
        me = await require_viewer(request)
        post_id = await _existing_post(request)
        data = InteractionData(user_id=me.user_id, post_id=post_id)
        event = model.model_validate({"type": undone if undo else done, "actor": me.user_id, "payload": data})
        await state_of(request).publisher.publish(event)
        return JSONResponse({"id": post_id, "status": "accepted"}, 202)

    write.__name__ = f"{'un' if undo else ''}{kind}"
    write.__doc__ = (
        f"`{'DELETE' if undo else 'POST'} /api/posts/{{id}}/{kind}` → 202 once Kafka has `{undone if undo else done}`."
    )
    return write


def _after(cursor: str | None) -> tuple[datetime, str] | None:
    if cursor is None:
        return None
    try:
        at, last = orjson.loads(cursor)
        return datetime.fromisoformat(at), str(last)
    except (orjson.JSONDecodeError, TypeError, ValueError):
        raise InvalidInput("cursor is not one this API issued", field="cursor") from None


def _next(page: Keyset) -> str | None:
    if page.after is None:
        return None
    at, last = page.after
    return encode_cursor(orjson.dumps([at.isoformat(), last]).decode())


async def _posts_page(request: Request, page: Keyset) -> Response:
    """The posts of a keyset page, in its order (posts deleted meanwhile left out), with their interactions."""
    found = {p.id: p for p in await PostgresPosts(state_of(request).pg).many([r["id"] for r in page.rows])}
    items = [post_json(found[r["id"]]) for r in page.rows if r["id"] in found]
    return JSONResponse({"items": await with_interactions(request, items), "next_cursor": _next(page)})


async def bookmarks(request: Request) -> Response:
    """`GET /api/bookmarks?cursor&limit` → the viewer's bookmarked posts, newest bookmark first; 401 anonymous."""
    me = await require_viewer(request)
    cursor, limit = page_params(request)
    store = PostgresInteractions(state_of(request).pg)
    return await _posts_page(request, await store.posts_of_user(me.user_id, "bookmark", _after(cursor), limit))


def _users_of(kind: Any) -> Callable[[Request], Awaitable[Response]]:
    async def users(request: Request) -> Response:
        cursor, limit = page_params(request)
        post_id = await _existing_post(request)
        page = await PostgresInteractions(state_of(request).pg).users_of_post(post_id, kind, _after(cursor), limit)
        items = [{k: row[k] for k in ("handle", "display_name", "avatar_url")} for row in page.rows]
        return JSONResponse({"items": items, "next_cursor": _next(page)})

    users.__name__ = f"{kind}s_of_post"
    users.__doc__ = f"`GET /api/posts/{{id}}/{kind}s?cursor&limit` → users, newest first; 404 for unknown posts."
    return users


async def quotes(request: Request) -> Response:
    """`GET /api/posts/{id}/quotes?cursor&limit` → the posts quoting it, newest first; 404 for unknown posts."""
    cursor, limit = page_params(request)
    post_id = await _existing_post(request)
    page = await PostgresInteractions(state_of(request).pg).quotes_of(post_id, _after(cursor), limit)
    return await _posts_page(request, page)


routes = [
    *(Route(f"/api/posts/{{post_id}}/{kind}", _writer(kind, undo=False), methods=["POST"]) for kind in KINDS),
    *(Route(f"/api/posts/{{post_id}}/{kind}", _writer(kind, undo=True), methods=["DELETE"]) for kind in KINDS),
    Route("/api/bookmarks", bookmarks, methods=["GET"]),
    Route("/api/posts/{post_id}/likes", _users_of("like"), methods=["GET"]),
    Route("/api/posts/{post_id}/reposts", _users_of("repost"), methods=["GET"]),
    Route("/api/posts/{post_id}/quotes", quotes, methods=["GET"]),
]
