"""`GET /api/posts/{id}/thread?cursor`: a whole conversation around one post.

`{"ancestors": [root … parent], "post": {...}, "replies": [{"post", "replies": [...], "more"}…], "more"}`: the
ancestors in order (a deleted one as `{"id", "deleted": true, ...}`, so the chain holds), the replies as a tree
`BREADTH` wide per level and `len(BREADTH)` deep, each level the original author's replies first, then oldest
first. A `more` cursor continues one post's replies: `GET /api/posts/{that post's id}/thread?cursor=<more>`.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.cursors import decode_cursor, encode_cursor
from gateway.errors import InvalidInput, JSONResponse, NotFound
from gateway.routes.posts import post_json
from gateway.state import state_of
from store.posts import PostgresPosts, PostView
from store.threads import Node, Shown, Threads, parse_key

BREADTH = (20, 5, 3)  # replies per post at each depth below the post


def shown_json(post: Shown) -> dict[str, Any]:
    if isinstance(post, PostView):
        return post_json(post)
    return {"id": post.id, "deleted": True, "reply_to": post.reply_to, "created_at": post.created_at}


def node_json(node: Node) -> dict[str, Any]:
    more = encode_cursor(node.more) if node.more else None
    return {"post": shown_json(node.post), "replies": [node_json(n) for n in node.replies], "more": more}


async def conversation(state: Any, post: PostView, cursor: str | None) -> dict[str, Any]:
    """The thread around a live post (pages render the same structure)."""
    try:
        after = parse_key(cursor) if cursor else None
    except ValueError:
        raise InvalidInput("cursor is not one this API issued", field="cursor") from None
    threads = Threads(state.pg)
    ancestors = await threads.ancestors(post.id)
    root_author = ancestors[0] if ancestors and isinstance(ancestors[0], PostView) else post
    op = root_author.author_id if isinstance(root_author, PostView) else post.author_id
    replies, more = await threads.replies(post.id, op, BREADTH, after)
    return {
        "ancestors": [shown_json(a) for a in ancestors],
        "post": post_json(post),
        "replies": [node_json(n) for n in replies],
        "more": encode_cursor(more) if more else None,
    }


async def thread(request: Request) -> Response:
    state = state_of(request)
    cursor = decode_cursor(request.query_params.get("cursor"))
    post = await PostgresPosts(state.pg).get(request.path_params["post_id"])
    if post is None:
        raise NotFound("No such post.")
    return JSONResponse(await conversation(state, post, cursor))


routes = [Route("/api/posts/{post_id}/thread", thread, methods=["GET"])]
