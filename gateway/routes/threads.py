"""`GET /api/posts/{id}/thread?cursor`: a whole conversation around one post.

`{"ancestors": [root … parent], "post": {...}, "replies": [{"post", "replies": [...], "more"}…], "more"}`: the
ancestors in order (a deleted one as `{"id", "deleted": true, ...}`, one by a user hidden from the viewer as
`{"id", "hidden": true, ...}`: the chain holds without showing what they said or who they are), the replies as a tree
`BREADTH` wide per level and `len(BREADTH)` deep, each level the original author's replies first, then oldest
first. A `more` cursor continues one post's replies: `GET /api/posts/{that post's id}/thread?cursor=<more>`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.cursors import CURSOR_FIELD, CursorShape
from gateway.errors import JSONResponse, NotFound
from gateway.openapi import contract
from gateway.post_objects import Post, post_json
from gateway.relations import hidden_for_viewer
from gateway.requests import QueryModel, path_param, query_as
from gateway.state import State, state_of
from store.posts import PostView
from store.threads import Node, Shown, Tombstone

BREADTH = (20, 5, 3)  # replies per post at each depth below the post

# A level continues after (0 for the original author's replies, 1 for others', post id); (-1, "") from its start.
THREAD_CURSOR: CursorShape[tuple[int, str]] = CursorShape(
    tuple[Annotated[int, Field(ge=-1, le=1)], Annotated[str, StringConstraints(max_length=64)]]
)


class ThreadQuery(QueryModel):
    cursor: str = CURSOR_FIELD


class DeletedPost(BaseModel):
    """A deleted post in a conversation: where it was, not what it said."""

    id: str
    deleted: Literal[True]
    reply_to: str | None
    created_at: datetime


class HiddenPost(BaseModel):
    """A post in a conversation by someone the viewer mutes, blocks or is blocked by: where it was, not its author
    or what it said."""

    id: str
    hidden: Literal[True]
    reply_to: str | None
    created_at: datetime


class ThreadNode(BaseModel):
    post: Post | DeletedPost
    replies: list[ThreadNode]
    more: str | None = Field(description="`cursor` for this post's thread: the replies below it not shown here")


class Thread(BaseModel):
    ancestors: list[Post | DeletedPost | HiddenPost] = Field(description="The root first, down to the parent")
    post: Post
    replies: list[ThreadNode]
    more: str | None = Field(description="`cursor` of the next replies to this post; null when all are shown")


def shown_json(post: Shown, hidden: Collection[str] = ()) -> dict[str, Any]:
    if isinstance(post, PostView) and post.author_id not in hidden:
        return post_json(post)
    gone = "deleted" if isinstance(post, Tombstone) else "hidden"
    return {"id": post.id, gone: True, "reply_to": post.reply_to, "created_at": post.created_at}


def node_json(node: Node) -> dict[str, Any]:
    more = THREAD_CURSOR.encode(node.more) if node.more else None
    return {"post": shown_json(node.post), "replies": [node_json(n) for n in node.replies], "more": more}


async def conversation(
    state: State, post: PostView, after: tuple[int, str] | None, hidden: Sequence[str] = ()
) -> dict[str, Any]:
    """The thread around a live post (the post page renders the same structure), without the replies of the
    `hidden` users (those the viewer mutes, blocks or is blocked by)."""
    threads = state.threads
    ancestors = await threads.ancestors(post.id)
    root = ancestors[0] if ancestors else post
    op = root.author_id if isinstance(root, PostView) else post.author_id
    replies, more = await threads.replies(post.id, op, BREADTH, after, hidden)
    unseen = set(hidden)
    return {
        "ancestors": [shown_json(a, unseen) for a in ancestors],
        "post": post_json(post),
        "replies": [node_json(n) for n in replies],
        "more": THREAD_CURSOR.encode(more) if more else None,
    }


@contract(Thread, query=ThreadQuery, errors=(404,))
async def thread(request: Request) -> Response:
    """A post with the chain above it and a bounded tree of the replies below it."""
    state = state_of(request)
    after = THREAD_CURSOR.decode(query_as(request, ThreadQuery).cursor)
    post = await state.posts.get(path_param(request, "post_id", "No such post."))
    if post is None:
        raise NotFound("No such post.")
    return JSONResponse(await conversation(state, post, after, await hidden_for_viewer(request)))


routes = [Route("/api/posts/{post_id}/thread", thread, methods=["GET"])]
