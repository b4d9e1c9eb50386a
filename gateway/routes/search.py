"""Search: `GET /api/search?q=&type=posts|users&cursor=&limit=` and `GET /api/tags/{tag}`.

The query language and ranking are described in store/search_query.py and store/search.py. A query that parses to
nothing searchable (stop words, lone operators, punctuation) gets an empty page, never an error; only an empty or
over-long `q`, a bad `type`, `cursor` or `limit` is a 422. The cursor of a post search freezes the ranking of the
first page (offset, reference time, newest candidate id), so paging does not shift as new posts arrive; past the
ranked candidates it pages through the older matches by (time, id). A logged-in viewer finds no posts of the users
hidden from them (muted, blocked, blocking them), and no users they block or are blocked by; muted users can still
be found, as on Mastodon (to visit their profile, or unmute them).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, StringConstraints
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.auth.current import viewer
from gateway.cursors import CURSOR_FIELD, DEFAULT_LIMIT, MAX_LIMIT, CursorShape, Micros, from_micros, micros
from gateway.errors import InvalidInput, JSONResponse, NotFound
from gateway.interactions import with_interactions
from gateway.openapi import contract
from gateway.post_objects import Post
from gateway.relations import hidden_for_viewer
from gateway.requests import Limit, QueryModel, query_as
from gateway.routes import posts as posts_route
from gateway.state import state_of
from schemas.events import Id
from store.search import CANDIDATES, USER_CANDIDATES
from store.search_query import MAX_QUERY_CHARS, parse_query


def _stripped(value: object) -> object:
    return value.strip() if isinstance(value, str) else value


class SearchQuery(QueryModel):
    """`?q&type&cursor&limit` of a search."""

    q: Annotated[str, BeforeValidator(_stripped), StringConstraints(min_length=1, max_length=MAX_QUERY_CHARS)] = Field(
        description='Words, "phrases", -excluded, #tag, from:@handle, OR'
    )
    type: Literal["posts", "users"] = "posts"
    cursor: str = CURSOR_FIELD
    limit: Limit(MAX_LIMIT) = DEFAULT_LIMIT  # type: ignore[valid-type]


class PostHit(Post):
    snippet: str = Field(description="HTML: the matching passage, matches in `<mark>`")


class UserHit(BaseModel):
    handle: str
    display_name: str
    avatar_url: str
    followers_count: int


class SearchResults(BaseModel):
    items: list[PostHit] | list[UserHit]
    next_cursor: str | None


class TagInfo(BaseModel):
    tag: str
    posts_count: int
    first_used_at: datetime
    last_used_at: datetime


OLDER: Literal["o"] = "o"  # first field of a cursor into the older, unranked matches
# A ranked page: (offset into the frozen ranking, its reference time, ceiling id); an older one: ("o", time, id).
RankedKey = tuple[Annotated[int, Field(ge=0, le=3 * CANDIDATES)], Micros, Id]
OlderKey = tuple[Literal["o"], Micros, Id]
POSTS_CURSOR: CursorShape[RankedKey | OlderKey] = CursorShape(RankedKey | OlderKey)
USERS_CURSOR: CursorShape[tuple[int]] = CursorShape(tuple[Annotated[int, Field(ge=0, le=USER_CANDIDATES)]])


def post_cursor(offset: int, ref: datetime, ceiling: str) -> str:
    """The cursor of the next ranked page: offset into the frozen ranking, its reference time and ceiling id."""
    return POSTS_CURSOR.encode((offset, micros(ref), ceiling))


def older_cursor(before: tuple[datetime, str]) -> str:
    """The cursor of the next page of older matches: the (time, id) to go on below."""
    return POSTS_CURSOR.encode((OLDER, micros(before[0]), before[1]))


def read_post_cursor(raw: str | None) -> tuple[int, datetime, str | None] | tuple[datetime, str]:
    """(offset, reference time, ceiling id) of a ranked page, the first when there is no cursor; or (time, id) of a
    page of older matches."""
    key = POSTS_CURSOR.decode(raw)
    if key is None:
        return 0, datetime.now(UTC), None
    first, at, last = key
    return (from_micros(at), last) if first == OLDER else (int(first), from_micros(at), last)


def read_user_cursor(raw: str | None) -> int:
    key = USERS_CURSOR.decode(raw)
    return 0 if key is None else key[0]


@contract(SearchResults, query=SearchQuery)
async def search(request: Request) -> Response:
    """`GET /api/search` → `{"items": [...], "next_cursor"}`: posts (with a `<mark>` snippet) or users."""
    params = query_as(request, SearchQuery)
    q, kind, limit = params.q, params.type, params.limit
    index = state_of(request).search
    query = parse_query(q)
    body: dict[str, Any]
    if kind == "users":
        offset = read_user_cursor(params.cursor)
        me = await viewer(request)  # muted users may still be found; those blocked either way may not
        blocked = await state_of(request).relations.blocked_either_way(me.user_id) if me else []
        users, more = await index.search_users(query, offset=offset, limit=limit, hidden=blocked)
        body = {"items": users, "next_cursor": USERS_CURSOR.encode((offset + limit,)) if more else None}
        return JSONResponse(body)
    page = read_post_cursor(params.cursor)
    hidden = await hidden_for_viewer(request)
    if len(page) == 2:
        hits = await index.search_older(query, before=page, limit=limit, hidden=hidden)
        following = older_cursor(hits.older) if hits.older else None
        return JSONResponse({"items": await with_interactions(request, hits.items), "next_cursor": following})
    offset, ref, ceiling = page
    hits = await index.search_posts(query, offset=offset, limit=limit, ref=ref, ceiling=ceiling, hidden=hidden)
    if hits.more and hits.ceiling:
        following = post_cursor(offset + limit, ref, hits.ceiling)
    else:
        following = older_cursor(hits.older) if hits.older else None
    return JSONResponse({"items": await with_interactions(request, hits.items), "next_cursor": following})


@contract(TagInfo, errors=(404,))
async def tag(request: Request) -> Response:
    """`GET /api/tags/{tag}` → `{tag, posts_count, first_used_at, last_used_at}` over live posts; 404 if none."""
    try:
        key = posts_route.tag_key(request.path_params["tag"])
    except InvalidInput:
        raise NotFound("No such tag.") from None
    stats = await state_of(request).search.tag_stats(key)
    if stats is None:
        raise NotFound("No such tag.")
    return JSONResponse(
        {
            "tag": stats.tag,
            "posts_count": stats.posts_count,
            "first_used_at": stats.first_used_at,
            "last_used_at": stats.last_used_at,
        }
    )


routes = [Route("/api/search", search, methods=["GET"]), Route("/api/tags/{tag}", tag, methods=["GET"])]
