"""`GET /api/notifications?cursor&limit`: the posts that mention the logged-in viewer, newest first.

Reads the mentions consumer's Redis model (consumers/mentions.py): one sorted-set page and the posts' hashes in
one pipeline, then the authors' handles in one SQL query.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from consumers.mentions import post_key, user_key
from gateway.auth.current import require_viewer
from gateway.cursors import CursorShape, PageQuery
from gateway.errors import JSONResponse
from gateway.openapi import contract
from gateway.state import state_of
from schemas.events import Id

TIES = 50  # items sharing the cursor's millisecond we can step over


# A page continues after (score: the mention's time in ms, post id) of the last item served.
NOTIFICATIONS_CURSOR: CursorShape[tuple[int, str]] = CursorShape(tuple[Annotated[int, Field(ge=0, le=2**53)], Id])


def _after(key: tuple[int, str] | None) -> tuple[str, str]:
    """(score, post id) of the last item served; ("+inf", "") for the first page."""
    return ("+inf", "") if key is None else (str(key[0]), key[1])


class MentionAuthor(BaseModel):
    user_id: str | None
    handle: str | None  # null until the author is known to the users read model


class Mention(BaseModel):
    post_id: str
    author: MentionAuthor
    text: str
    at: int = Field(description="When the post was written, in milliseconds since the epoch")


class Mentions(BaseModel):
    items: list[Mention]
    next_cursor: str | None


@contract(Mentions, query=PageQuery, auth="required")
async def notifications(request: Request) -> Response:
    """The viewer's mention notifications: `{items: [{post_id, author, text, at}], next_cursor}`."""
    me = await require_viewer(request)
    cursor, limit = NOTIFICATIONS_CURSOR.page(request)
    state = state_of(request)
    score, last = _after(cursor)
    # Inclusive bound, then skip what was served: same-millisecond items sort by post id, descending.
    found: list[tuple[str, float]] = await state.redis.zrevrangebyscore(  # type: ignore[assignment]
        user_key(me.user_id), score, "-inf", start=0, num=limit + 1 + (TIES if last else 0), withscores=True
    )
    page = [(m, s) for m, s in found if not last or s < float(score) or m < last][: limit + 1]
    shown = page[:limit]
    async with state.redis.pipeline(transaction=False) as pipe:
        for post_id, _ in shown:
            pipe.hgetall(post_key(post_id))
        details: list[dict[str, str]] = await pipe.execute()
    authors = {d["author_id"] for d in details if d}
    rows = await state.pg.fetch("SELECT user_id, handle FROM users WHERE user_id = ANY($1::text[])", sorted(authors))
    handles = {r["user_id"]: r["handle"] for r in rows}
    items: list[dict[str, Any]] = [
        {
            "post_id": post_id,
            "author": {"user_id": d.get("author_id"), "handle": handles.get(d.get("author_id", ""))},
            "text": d.get("text", ""),
            "at": int(score),
        }
        for (post_id, score), d in zip(shown, details, strict=True)
    ]
    next_cursor = NOTIFICATIONS_CURSOR.encode((int(shown[-1][1]), shown[-1][0])) if len(page) > limit else None
    return JSONResponse({"items": items, "next_cursor": next_cursor})


routes = [Route("/api/notifications", notifications, methods=["GET"])]
