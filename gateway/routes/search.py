"""Search: `GET /api/search?q=&type=posts|users&cursor=&limit=` and `GET /api/tags/{tag}`.

The query language and ranking are described in store/search_query.py and store/search.py. A query that parses to
nothing searchable (stop words, lone operators, punctuation) gets an empty page, never an error; only an empty or
over-long `q`, a bad `type`, `cursor` or `limit` is a 422. The cursor of a post search freezes the ranking of the
first page (offset, reference time, newest candidate id), so paging does not shift as new posts arrive; past the
ranked candidates it pages through the older matches by (time, id).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.cursors import decode_cursor, encode_cursor, parse_limit
from gateway.errors import InvalidInput, JSONResponse, NotFound
from gateway.interactions import with_interactions
from gateway.state import state_of
from store.search import CANDIDATES, USER_CANDIDATES, PostgresSearch
from store.search_query import MAX_QUERY_CHARS, parse_query, tag_key

TYPES = ("posts", "users")
MAX_TAG_CHARS = 100


def validate_q(raw: str | None) -> str:
    """The query text, or InvalidInput(field="q") when empty or longer than MAX_QUERY_CHARS."""
    q = (raw or "").strip()
    if not q:
        raise InvalidInput("Type something to search for.", field="q")
    if len(q) > MAX_QUERY_CHARS:
        raise InvalidInput(f"A search is at most {MAX_QUERY_CHARS} characters ({len(q)} given).", field="q")
    return q


def validate_type(raw: str | None) -> str:
    kind = raw or "posts"
    if kind not in TYPES:
        raise InvalidInput("type must be posts or users.", field="type")
    return kind


OLDER = "o"  # first field of a cursor into the older, unranked matches


def _micros(at: datetime) -> int:
    return int(at.timestamp() * 1_000_000)


def _at(micros: str) -> datetime:
    return datetime.fromtimestamp(int(micros) / 1_000_000, UTC)


def post_cursor(offset: int, ref: datetime, ceiling: str) -> str:
    """The cursor of the next ranked page: offset into the frozen ranking, its reference time and ceiling id."""
    return encode_cursor(f"{offset}|{_micros(ref)}|{ceiling}")


def older_cursor(before: tuple[datetime, str]) -> str:
    """The cursor of the next page of older matches: the (time, id) to go on below."""
    return encode_cursor(f"{OLDER}|{_micros(before[0])}|{before[1]}")


def read_post_cursor(raw: str | None) -> tuple[int, datetime, str | None] | tuple[datetime, str]:
    """(offset, reference time, ceiling id) of a ranked page, the first when there is no cursor; or (time, id) of a
    page of older matches."""
    value = decode_cursor(raw)
    if value is None:
        return 0, datetime.now(UTC), None
    first, at, last = [*value.split("|", 2), "", ""][:3]
    if not (at.isdigit() and last) or not (first == OLDER or (first.isdigit() and int(first) <= 3 * CANDIDATES)):
        raise InvalidInput("cursor is not one this API issued", field="cursor")
    return (_at(at), last) if first == OLDER else (int(first), _at(at), last)


def read_user_cursor(raw: str | None) -> int:
    value = decode_cursor(raw)
    if value is None:
        return 0
    if not value.isdigit() or int(value) > USER_CANDIDATES:
        raise InvalidInput("cursor is not one this API issued", field="cursor")
    return int(value)


async def search(request: Request) -> Response:
    """`GET /api/search` → `{"items": [...], "next_cursor"}`: posts (with a `<mark>` snippet) or users."""
    params = request.query_params
    q = validate_q(params.get("q"))
    kind = validate_type(params.get("type"))
    limit = parse_limit(params.get("limit"))
    index = PostgresSearch(state_of(request).search_pg)
    query = parse_query(q)
    body: dict[str, Any]
    if kind == "users":
        offset = read_user_cursor(params.get("cursor"))
        users, more = await index.search_users(query, offset=offset, limit=limit)
        body = {"items": users, "next_cursor": encode_cursor(str(offset + limit)) if more else None}
        return JSONResponse(body)
    page = read_post_cursor(params.get("cursor"))
    if len(page) == 2:
        hits = await index.search_older(query, before=page, limit=limit)
        following = older_cursor(hits.older) if hits.older else None
        return JSONResponse({"items": await with_interactions(request, hits.items), "next_cursor": following})
    offset, ref, ceiling = page
    hits = await index.search_posts(query, offset=offset, limit=limit, ref=ref, ceiling=ceiling)
    if hits.more and hits.ceiling:
        following = post_cursor(offset + limit, ref, hits.ceiling)
    else:
        following = older_cursor(hits.older) if hits.older else None
    return JSONResponse({"items": await with_interactions(request, hits.items), "next_cursor": following})


async def tag(request: Request) -> Response:
    """`GET /api/tags/{tag}` → `{tag, posts_count, first_used_at, last_used_at}` over live posts; 404 if none."""
    key = tag_key(request.path_params["tag"])
    if not key or len(key) > MAX_TAG_CHARS:
        raise NotFound("No such tag.")
    stats = await PostgresSearch(state_of(request).search_pg).tag_stats(key)
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
