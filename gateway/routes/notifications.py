"""The logged-in viewer's notifications, read from the notifications consumer's Redis model
(consumers/notifications.py).

- `GET /api/notifications?cursor&limit` → `{"items": [{"id", "type", "actors", "count", "post"?, "at", "read"}],
  "next_cursor"}`, newest first: one sorted-set page (in the round trip that checks the viewer), the items'
  details in one script call, then the actors in one SQL query and the posts in another. Actors the
  reader mutes, blocks or is blocked by are neither shown nor counted, and an item only they acted in is left out
  (so is its unread count).
- `GET /api/notifications/unread` → `{"count": n}`: one ZCARD.
- `POST /api/notifications/read` with `{"up_to": "<item id>"}` or `{}` (all) → 204 once Kafka has the
  `notifications-read` event; the consumer applies it (so a replay keeps what was read).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field
from redis.asyncio.client import Pipeline
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from chirp.redis_client import pipelined
from gateway.auth.current import require_viewer, require_viewer_with
from gateway.cursors import CursorShape, PageQuery
from gateway.errors import InvalidInput, JSONResponse
from gateway.openapi import contract
from gateway.post_objects import Author, Post, post_json
from gateway.read_marks import mark_read
from gateway.requests import RequestModel, body_as
from gateway.state import State, state_of
from schemas.events import Id
from store.notifications import SHOWN_ACTORS, actors_key, item_key, items_key, unread_key
from store.relations import hidden_key

TIES = 50  # items sharing the cursor's millisecond we can step over
HIDDEN_SLACK = 10  # actors read beyond those shown, so that hidden ones among the latest leave the rest shown

# A page continues after (score: the item's latest time in ms, item id) of the last item served.
NOTIFICATIONS_CURSOR: CursorShape[tuple[int, str]] = CursorShape(tuple[Annotated[int, Field(ge=0, le=2**53)], Id])


class Notification(BaseModel):
    """One item: who (the latest few of `count` distinct actors), what, about which post (when there is one)."""

    id: str
    type: str = Field(description="mention, reply, quote, follow, like or repost")
    actors: list[Author]
    count: int
    post: Post | None = Field(None, description="The post it is about; absent for a follow")
    at: datetime = Field(description="When its latest action happened")
    read: bool


class NotificationPage(BaseModel):
    items: list[Notification]
    next_cursor: str | None = Field(description="The `cursor` of the next page; null on the last page")


class UnreadCount(BaseModel):
    count: int


class MarkRead(RequestModel):
    """`{"up_to": "<item id>"}`: that item and every older one are read; `{}`: all of them."""

    up_to: Id | None = None


def _after(key: tuple[int, str] | None) -> tuple[str, str]:
    """(score, item id) of the last item served; ("+inf", "") for the first page."""
    return ("+inf", "") if key is None else (str(key[0]), key[1])


def _moment(score: float) -> datetime:
    return datetime.fromtimestamp(score / 1000, UTC)


async def _people(state: State, user_ids: set[str]) -> dict[str, dict[str, str]]:
    rows = (await state.users.cards(sorted(user_ids))).values()
    return {
        r["user_id"]: {
            "handle": "" if r["handle"].startswith("~") else r["handle"],
            "display_name": r["display_name"] or "",
            "avatar_url": r["avatar_url"] or "",
        }
        for r in rows
    }


# KEYS: the reader's hidden set, their unread set, then each item's hash and actors.  ARGV: how many actors to
# read, then the item ids.  Per item: its hash (flat), its latest actors, how many actors are not hidden, and
# its unread score (nil: read). One call instead of five commands an item: most of a page's cost was redis-py's
# packing and parsing of them.
_DETAILS = """
local out = {}
for i = 2, #ARGV do
  local item, actors = KEYS[2 * i - 1], KEYS[2 * i]
  out[#out + 1] = redis.call('HGETALL', item)
  out[#out + 1] = redis.call('ZREVRANGE', actors, 0, tonumber(ARGV[1]) - 1)
  out[#out + 1] = redis.call('ZCARD', actors) - redis.call('ZINTERCARD', 2, actors, KEYS[1])
  out[#out + 1] = redis.call('ZSCORE', KEYS[2], ARGV[i])
end
return out
"""


def queue_head(pipe: Pipeline, user_id: str, cursor: tuple[int, str] | None, limit: int) -> None:
    """The first Redis step of a page (its items and the reader's hidden users), for the viewer's round trip."""
    score, last = _after(cursor)
    # Inclusive bound, then skip what was served: same-millisecond items sort by id, descending.
    pipe.zrevrangebyscore(
        items_key(user_id), score, "-inf", start=0, num=limit + 1 + (TIES if last else 0), withscores=True
    )
    pipe.smembers(hidden_key(user_id))


async def notification_page(
    state: State, user_id: str, cursor: tuple[int, str] | None, limit: int, head: list[Any] | None = None
) -> dict[str, Any]:
    """One page of a user's notifications, as the API serves it (the notifications page renders it too); `head`:
    the replies to `queue_head`'s commands when they were already sent."""
    if head is None:
        head = await pipelined(state.redis, lambda pipe: queue_head(pipe, user_id, cursor, limit))
    found: list[tuple[str, float]]
    unseen: set[str]
    found, unseen = head
    score, last = _after(cursor)
    page = [(m, s) for m, s in found if not last or s < float(score) or m < last][: limit + 1]
    shown = page[:limit]
    details: list[tuple[dict[str, str], list[str], int, object]] = []
    if shown:
        keys = [hidden_key(user_id), unread_key(user_id)]
        for item_id, _ in shown:
            keys += [item_key(user_id, item_id), actors_key(user_id, item_id)]
        script = state.redis.register_script(_DETAILS)
        flat = await script(keys=keys, args=[SHOWN_ACTORS + HIDDEN_SLACK, *(item_id for item_id, _ in shown)])
        for i in range(0, len(flat), 4):
            info, actors, count, unread = flat[i : i + 4]
            # the actors the reader mutes, blocks or is blocked by are not shown (the script did not count them)
            shown_actors = [a for a in actors if a not in unseen][:SHOWN_ACTORS]
            details.append((dict(zip(info[::2], info[1::2], strict=True)), shown_actors, int(count), unread))
    people = await _people(state, {a for d in details for a in d[1]})
    wanted = sorted({d[0]["post"] for d in details if d[0].get("post")})
    posts = {p.id: p for p in await state.posts.many(wanted)} if wanted else {}
    items: list[dict[str, Any]] = []
    for (item_id, at), (info, actors, count, unread) in zip(shown, details, strict=True):
        if count <= 0:
            continue  # only hidden users did it
        item: dict[str, Any] = {
            "id": item_id,
            "type": info.get("type", ""),
            "actors": [people.get(a, {"handle": "", "display_name": "", "avatar_url": ""}) for a in actors],
            "count": count,
            "at": _moment(at),
            "read": unread is None,
        }
        if info.get("post"):
            post = posts.get(info["post"])
            if post is None:
                continue  # deleted a moment ago: its item is on its way out
            item["post"] = post_json(post)
        items.append(item)
    next_cursor = NOTIFICATIONS_CURSOR.encode((int(shown[-1][1]), shown[-1][0])) if len(page) > limit else None
    return {"items": items, "next_cursor": next_cursor}


async def unread_count(state: State, user_id: str) -> int:
    """Unread items with an actor the reader sees: one round trip when they hide nobody, else two more."""
    async with state.redis.pipeline(transaction=False) as pipe:
        pipe.zcard(unread_key(user_id))
        pipe.scard(hidden_key(user_id))
        total, hiding = await pipe.execute()
    if not hiding or not total:
        return int(total)
    unread: list[str] = await state.redis.zrange(unread_key(user_id), 0, -1)  # type: ignore[assignment]
    async with state.redis.pipeline(transaction=False) as pipe:
        for item_id in unread:
            pipe.zcard(actors_key(user_id, item_id))
            pipe.zintercard(2, [actors_key(user_id, item_id), hidden_key(user_id)])
        counts = await pipe.execute()
    return sum(1 for i in range(0, len(counts), 2) if counts[i] > counts[i + 1])


@contract(NotificationPage, query=PageQuery, auth="required")
async def notifications(request: Request) -> Response:
    """The viewer's notifications, newest first; likes and reposts of one post grouped while unread."""
    try:
        cursor, limit = NOTIFICATIONS_CURSOR.page(request)
    except InvalidInput:
        await require_viewer(request)  # an anonymous request is refused whatever its query
        raise
    me, head = await require_viewer_with(request, lambda pipe, user_id: queue_head(pipe, user_id, cursor, limit))
    return JSONResponse(await notification_page(state_of(request), me.user_id, cursor, limit, head))


@contract(UnreadCount, auth="required")
async def unread(request: Request) -> Response:
    """How many of the viewer's notifications are unread (one Redis read)."""
    me = await require_viewer(request)
    return JSONResponse({"count": await unread_count(state_of(request), me.user_id)})


@contract(None, status=204, body=MarkRead, auth="required")
async def read(request: Request) -> Response:
    """Mark the viewer's notifications read, up to one item or all; 204 once Kafka has the read mark."""
    me = await require_viewer(request)
    body = await body_as(request, MarkRead)
    await mark_read(state_of(request), me.user_id, body.up_to)
    return Response(status_code=204)


routes = [
    Route("/api/notifications", notifications, methods=["GET"]),
    Route("/api/notifications/unread", unread, methods=["GET"]),
    Route("/api/notifications/read", read, methods=["POST"]),
]
