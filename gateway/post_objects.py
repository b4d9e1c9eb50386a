"""The post object every API response and page shows: its response models and `post_json`, which builds it from a
read model's `PostView` (interactions are added by gateway/interactions.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from store.posts import PostView


class Author(BaseModel):
    handle: str
    display_name: str
    avatar_url: str


class QuotedPost(BaseModel):
    id: str
    author: Author
    html: str
    text: str
    created_at: datetime


class DeletedPost(BaseModel):
    id: str
    deleted: Literal[True]


class Post(BaseModel):
    """A post as the API shows it: its Markdown, the sanitized HTML and plain text rendered from it."""

    id: str
    author_id: str
    author: Author
    body: str
    html: str
    text: str
    hashtags: list[str]
    mentions: list[str]
    reply_to: str | None
    reply_to_handle: str = Field("", description="Handle of the replied-to post's author; empty when unknown")
    reply_count: int
    created_at: datetime
    edited_at: datetime | None = Field(None, description="When the version shown was written; absent if never edited")
    # Interactions (gateway/interactions.py): counts always, the viewer's flags when logged in
    like_count: int = 0
    repost_count: int = 0
    quote_count: int = 0
    liked_by_me: bool | None = Field(None, description="Absent when anonymous")
    reposted_by_me: bool | None = Field(None, description="Absent when anonymous")
    bookmarked_by_me: bool | None = Field(None, description="Absent when anonymous")
    quote_of: QuotedPost | DeletedPost | None = Field(None, description="The quoted post, for a quote")
    reposted_by: Author | None = Field(None, description="Who reposted it (home timeline and profile lists)")
    reposted_at: datetime | None = None


class PostPage(BaseModel):
    items: list[Post]
    next_cursor: str | None = Field(description="The `cursor` of the next page; null on the last page")


def post_json(post: PostView) -> dict[str, Any]:
    """A post as the API shows it."""
    edited = {"edited_at": post.edited_at} if post.edited_at else {}
    return edited | {
        "id": post.id,
        "author_id": post.author_id,
        "author": {"handle": post.handle, "display_name": post.display_name, "avatar_url": post.avatar_url},
        "body": post.body,
        "html": post.html,
        "text": post.text,
        "hashtags": post.hashtags,
        "mentions": post.mentions,
        "reply_to": post.reply_to,
        "reply_to_handle": post.reply_to_handle,
        "reply_count": post.reply_count,
        "created_at": post.created_at,
    }


_built: dict[str, tuple[PostView, dict[str, Any]]] = {}  # post id -> (the view, its post object)
_MAX_BUILT = 50_000


def cached_post_json(post: PostView) -> dict[str, Any]:
    """`post_json` of a view read again and again (the timeline's cached posts hand out the same view for seconds),
    built once per view and shared: callers never change it, they build the page's objects from it
    (`gateway.interactions.with_interactions` and `with_reposts` make new ones)."""
    entry = _built.get(post.id)
    if entry is None or entry[0] is not post:
        if len(_built) >= _MAX_BUILT:
            _built.clear()
        entry = _built[post.id] = (post, post_json(post))
    return entry[1]
