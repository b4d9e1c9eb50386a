"""Post objects built once per view (the timeline's) and shared, never changed by the page built from them; a new
view of a post (a rename, an edit, a reply count) is built anew."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from starlette.requests import Request

from gateway.interaction_cache import InteractionCache
from gateway.interactions import with_interactions
from gateway.post_objects import cached_post_json, post_json
from store.posts import PostView

VIEW = PostView(
    id="01J0000000000000000000000A",
    author_id="u1",
    handle="ann",
    display_name="Ann",
    avatar_url="",
    body="hi",
    html="<p>hi</p>",
    text="hi",
    hashtags=[],
    mentions=[],
    reply_to=None,
    reply_count=0,
    created_at=datetime(2026, 1, 1, tzinfo=UTC),
)


async def _likes(post_ids: list[str], viewer_id: str | None) -> dict[str, dict[str, Any]]:
    return {post_id: {"like_count": 3, "repost_count": 0, "quote_count": 0} for post_id in post_ids}


class _Likes(InteractionCache):
    """The cache, answering `_likes` (no Redis, no store)."""

    def __init__(self) -> None:
        super().__init__(None, None)  # type: ignore[arg-type]

    async def of_posts(self, post_ids: Any, viewer_id: str | None) -> dict[str, dict[str, Any]]:
        return await _likes(list(post_ids), viewer_id)


async def test_the_shared_object_is_not_changed_by_a_page_built_from_it() -> None:
    first = cached_post_json(VIEW)
    assert first == post_json(VIEW) and cached_post_json(VIEW) is first
    cache = _Likes()
    app = SimpleNamespace(state=SimpleNamespace(chirp=SimpleNamespace(interaction_cache=cache)))
    request = Request({"type": "http", "method": "GET", "path": "/", "headers": [], "viewer": None, "app": app})
    [shown] = await with_interactions(request, [first], cached=True)
    assert shown == post_json(VIEW) | {"like_count": 3, "repost_count": 0, "quote_count": 0}
    assert "like_count" not in cached_post_json(VIEW)


def test_a_new_view_of_the_post_is_built_anew() -> None:
    cached_post_json(VIEW)
    renamed = dataclasses.replace(VIEW, display_name="Ann B.", reply_count=2)
    assert cached_post_json(renamed) == post_json(renamed)
    assert cached_post_json(renamed)["author"]["display_name"] == "Ann B."
