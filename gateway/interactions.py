"""Post objects gain their interactions: counts, the viewer's `*_by_me` flags and the quoted post.

One query to the interactions read model per page (store/interactions.py), whatever the page's size or the posts'
popularity (counters, not counts at read time).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from gateway.auth.current import viewer
from gateway.state import state_of
from store.interactions import PostgresInteractions

NONE = {"like_count": 0, "repost_count": 0, "quote_count": 0}


async def with_interactions(request: Request, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`items` (post objects) with their interaction fields added, for the request's viewer (if logged in)."""
    if not items:
        return items
    me = await viewer(request)
    found = await PostgresInteractions(state_of(request).pg).of_posts(
        [p["id"] for p in items], me.user_id if me else None
    )
    blank = {**NONE, **({"liked_by_me": False, "reposted_by_me": False, "bookmarked_by_me": False} if me else {})}
    for post in items:
        post.update(found.get(post["id"], blank))
    return items
