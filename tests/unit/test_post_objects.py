"""Post objects built once per view (the timeline's): each call gets its own copy, and a new view of a post (a
rename, an edit, a reply count) is built anew."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

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


def test_each_call_gets_its_own_copy() -> None:
    first = cached_post_json(VIEW)
    assert first == post_json(VIEW)
    first["like_count"] = 3  # what gateway/interactions.py adds to a page's objects
    assert "like_count" not in cached_post_json(VIEW)


def test_a_new_view_of_the_post_is_built_anew() -> None:
    cached_post_json(VIEW)
    renamed = dataclasses.replace(VIEW, display_name="Ann B.", reply_count=2)
    assert cached_post_json(renamed) == post_json(renamed)
    assert cached_post_json(renamed)["author"]["display_name"] == "Ann B."
