"""Post objects gain their interactions: counts, the viewer's `*_by_me` flags and the quoted post.

One query to the interactions read model per page (store/interactions.py), whatever the page's size or the posts'
popularity (counters, not counts at read time). The home timeline, read again and again, passes `cached=True`:
then fresh answers come from this process's InteractionCache (gateway/interaction_cache.py) without a query.
`GET /api/posts/{id}` (`post_with_interactions`) uses the same cache, and on a miss reads the post with them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from datetime import datetime, timedelta
from typing import Any

from starlette.requests import Request
from ulid import ULID

from gateway.auth.current import viewer
from gateway.errors import InvalidInput
from gateway.state import state_of
from store.posts import PostView
from store.timelines import repost_key

NONE = {"like_count": 0, "repost_count": 0, "quote_count": 0}


async def interactions_of(request: Request, post_ids: list[str], *, cached: bool = False) -> dict[str, dict[str, Any]]:
    """post id -> the fields its post object gains (counts, and the flags of the request's viewer if logged in), for
    every id given (blank for posts nobody interacted with): one query."""
    if not post_ids:
        return {}
    me = await viewer(request)
    state = state_of(request)
    source = state.interaction_cache if cached else state.interactions
    found = await source.of_posts(post_ids, me.user_id if me else None)
    blank = {**NONE, **({"liked_by_me": False, "reposted_by_me": False, "bookmarked_by_me": False} if me else {})}
    return {post_id: found.get(post_id, blank) for post_id in post_ids}


async def post_with_interactions(request: Request, post_id: str) -> tuple[PostView | None, dict[str, Any]]:
    """A live post (None when unknown or deleted) and the fields it gains for the request's viewer: counts and flags
    from the process's InteractionCache when fresh (as the home timeline's), else read with the post in one query."""
    me = await viewer(request)
    state = state_of(request)
    return await state.interaction_cache.post_and_fields(post_id, me.user_id if me else None, state.posts)


async def with_interactions(
    request: Request, items: list[dict[str, Any]], *, cached: bool = False
) -> list[dict[str, Any]]:
    """`items` (post objects) with their interaction fields added, for the request's viewer (if logged in): new
    objects, so `items` may be shared ones (`gateway.post_objects.cached_post_json`)."""
    found = await interactions_of(request, [p["id"] for p in items], cached=cached)
    return [post | found[post["id"]] for post in items]


def cursor_time(cursor: str | None) -> datetime | None:
    """The instant just after the millisecond a cursor key stands for (reposts are filtered finely by key)."""
    if cursor is None:
        return None
    try:
        return ULID.from_str(cursor).datetime + timedelta(milliseconds=1)
    except ValueError:
        raise InvalidInput("cursor is not one this API issued", field="cursor") from None


async def with_reposts(
    request: Request,
    posts: list[PostView],
    more: bool,
    users: list[str] | str,
    cursor: str | None,
    limit: int,
    post_json: Callable[[PostView], dict[str, Any]],
    load: Callable[[list[str]], Awaitable[list[PostView]]] | None = None,
    *,
    hidden: Collection[str] = (),
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of posts (newest first, after `cursor`; `more` when the source has more) merged with what `users`
    reposted (a list of ids, or one id: that user and whom they follow), as post objects. A repost is the original
    post with `reposted_by` and `reposted_at`, sorted at its latest repost; a post shows once, at its newest place.
    Reposts by, or of posts by, the `hidden` users are left out: hidden reposters in the query (matched against
    whom `users` follow, so an earlier visible reposter's repost still shows), posts by hidden authors here (a long
    array of ids costs the query far more than the few rows it drops). Returns the page and the next cursor. One
    user's (a home timeline) come from the InteractionCache; `load` reads the reposted posts by id (default: one
    posts query)."""
    state = state_of(request)
    before = cursor_time(cursor)
    if isinstance(users, str):
        reposts = await state.interaction_cache.reposts_by(users, before, limit + 1, hidden)
    else:
        reposts = await state.interactions.reposts_by(users, before, limit + 1, list(hidden))
    reposts = [r for r in reposts if cursor is None or repost_key(r["post_id"], r["changed_at"]) < cursor]
    if not reposts and len(posts) <= limit:  # nothing to merge (most pages): the posts, the source's next cursor
        return [post_json(p) for p in posts], posts[-1].id if more and posts else None
    # With more reposts than fetched, the page stops at the oldest fetched one: below it, one may be missing.
    lower = repost_key(reposts[-1]["post_id"], reposts[-1]["changed_at"]) if len(reposts) > limit else ""
    reposted = [r["post_id"] for r in reposts]
    originals = {p.id: p for p in await (load or state.posts.many)(reposted)} if reposted else {}
    unseen = hidden if isinstance(hidden, (set, frozenset)) else set(hidden)  # not a copy of a long set per page
    candidates: list[tuple[str, dict[str, Any]]] = [(p.id, post_json(p)) for p in posts]
    for row in reposts:
        found = originals.get(row["post_id"])
        if found is not None and row["user_id"] not in unseen and found.author_id not in unseen:
            by = {k: row[k] for k in ("handle", "display_name", "avatar_url")}
            item = {**post_json(found), "reposted_by": by, "reposted_at": row["changed_at"]}
            candidates.append((repost_key(found.id, row["changed_at"]), item))
    candidates.sort(key=lambda c: c[0], reverse=True)
    page: list[tuple[str, dict[str, Any]]] = []
    shown: set[str] = set()
    left = False  # candidates past the page
    for key, item in candidates:
        if item["id"] in shown:
            continue
        if len(page) == limit or key < lower:
            left = True
            break
        shown.add(item["id"])
        page.append((key, item))
    has_more = more or len(reposts) > limit or left
    if not has_more:
        return [item for _, item in page], None
    return [item for _, item in page], page[-1][0] if page else lower or None
