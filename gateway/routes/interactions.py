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
from typing import Literal

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from gateway.auth.current import require_viewer
from gateway.cursors import CursorShape, Micros, PageQuery, from_micros, micros
from gateway.errors import JSONResponse, NotFound
from gateway.interactions import with_interactions
from gateway.openapi import contract
from gateway.post_objects import PostPage, post_json
from gateway.requests import path_param
from gateway.routes import resource
from gateway.routes.posts import PostAccepted
from gateway.state import state_of
from schemas.events import Id, InteractionData, PostBookmark, PostLike, PostRepost
from store.interactions import Keyset, Kind

Endpoint = Callable[[Request], Awaitable[Response]]
# kind in the URL -> (event model, type when done, type when undone)
KINDS: dict[Kind, tuple[type[PostLike | PostRepost | PostBookmark], str, str]] = {
    "like": (PostLike, "post-liked", "post-unliked"),
    "repost": (PostRepost, "post-reposted", "post-unreposted"),
    "bookmark": (PostBookmark, "post-bookmarked", "post-unbookmarked"),
}
# Pages continue after (when: the interaction or the quote, in microseconds; the id of the last item).
KEYSET: CursorShape[tuple[int, str]] = CursorShape(tuple[Micros, Id])


class UserItem(BaseModel):
    handle: str
    display_name: str
    avatar_url: str


class UserPage(BaseModel):
    items: list[UserItem]
    next_cursor: str | None


async def _existing_post(request: Request) -> str:
    post_id = path_param(request, "post_id", "No such post.")
    if not await state_of(request).posts.exists(post_id):
        raise NotFound("No such post.")
    return post_id


def _writer(kind: Kind, undo: bool) -> Endpoint:
    model, done, undone = KINDS[kind]
    name = undone if undo else done

    @contract(PostAccepted, status=202, auth="required", errors=(404,))
    async def write(request: Request) -> Response:
        me = await require_viewer(request)
        post_id = await _existing_post(request)
        data = InteractionData(user_id=me.user_id, post_id=post_id)
        event = model.model_validate({"type": name, "actor": me.user_id, "payload": data})
        await state_of(request).publisher.publish(event)
        return JSONResponse({"id": post_id, "status": "accepted"}, 202)

    write.__name__ = name.replace("-", "_")
    write.__doc__ = f"`{'DELETE' if undo else 'POST'} /api/posts/{{id}}/{kind}` → 202 once Kafka has `{name}`."
    return write


def _after(key: tuple[int, str] | None) -> tuple[datetime, str] | None:
    return None if key is None else (from_micros(key[0]), key[1])


def _next(page: Keyset) -> str | None:
    return None if page.after is None else KEYSET.encode((micros(page.after[0]), page.after[1]))


async def _posts_page(request: Request, page: Keyset) -> Response:
    """The posts of a keyset page, in its order (posts deleted meanwhile left out), with their interactions."""
    found = {p.id: p for p in await state_of(request).posts.many([r["id"] for r in page.rows])}
    items = [post_json(found[r["id"]]) for r in page.rows if r["id"] in found]
    return JSONResponse({"items": await with_interactions(request, items), "next_cursor": _next(page)})


@contract(PostPage, query=PageQuery, auth="required")
async def bookmarks(request: Request) -> Response:
    """`GET /api/bookmarks?cursor&limit` → the viewer's bookmarked posts, newest bookmark first; 401 anonymous."""
    me = await require_viewer(request)
    cursor, limit = KEYSET.page(request)
    store = state_of(request).interactions
    return await _posts_page(request, await store.posts_of_user(me.user_id, "bookmark", _after(cursor), limit))


def _users_of(kind: Literal["like", "repost"]) -> Endpoint:
    @contract(UserPage, query=PageQuery, errors=(404,))
    async def users(request: Request) -> Response:
        cursor, limit = KEYSET.page(request)
        post_id = await _existing_post(request)
        page = await state_of(request).interactions.users_of_post(post_id, kind, _after(cursor), limit)
        items = [{k: row[k] for k in ("handle", "display_name", "avatar_url")} for row in page.rows]
        return JSONResponse({"items": items, "next_cursor": _next(page)})

    users.__name__ = f"{kind}s_of_post"
    users.__doc__ = f"`GET /api/posts/{{id}}/{kind}s?cursor&limit` → who did, newest first; 404 for unknown posts."
    return users


@contract(PostPage, query=PageQuery, errors=(404,))
async def quotes(request: Request) -> Response:
    """`GET /api/posts/{id}/quotes?cursor&limit` → the posts quoting it, newest first; 404 for unknown posts."""
    cursor, limit = KEYSET.page(request)
    post_id = await _existing_post(request)
    page = await state_of(request).interactions.quotes_of(post_id, _after(cursor), limit)
    return await _posts_page(request, page)


routes = [
    *(
        resource(f"/api/posts/{{post_id}}/{kind}", post=_writer(kind, undo=False), delete=_writer(kind, undo=True))
        for kind in KINDS
    ),
    resource("/api/bookmarks", get=bookmarks),
    resource("/api/posts/{post_id}/likes", get=_users_of("like")),
    resource("/api/posts/{post_id}/reposts", get=_users_of("repost")),
    resource("/api/posts/{post_id}/quotes", get=quotes),
]
