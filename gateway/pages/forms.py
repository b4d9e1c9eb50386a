"""Form state the templates render: what was typed, the error next to its field, a per-render idempotency key."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from domain.text import MAX_POST_CHARS
from schemas.events import new_id


@dataclass
class Composer:
    """The post (or reply) form: re-rendered with the text kept when the post is refused."""

    next: str = "/"
    reply_to: str | None = None
    quote_of: str | None = None
    quoted: dict[str, Any] | None = None  # the quoted post object, embedded under the text area
    body: str = ""
    error: str = ""
    max_chars: int = MAX_POST_CHARS
    # A resubmitted form (double click, reload after a lost answer) reuses the key, so it makes one post.
    idempotency_key: str = field(default_factory=new_id)
