"""Conversations, read from the posts table: a post's ancestors (root first) and its replies as a bounded tree.

- Ancestors follow `reply_to` upwards in one recursive query; a deleted post in the chain comes back as a
  tombstone (`deleted`), so the chain is never broken by a delete.
- Replies come one level per query, at most `breadth` per parent: each level the original author's replies
  first, then oldest first. A deleted reply shows only when live replies hang below it.
- A level continues with a keyset cursor on (not by the original author, post id): `after` is the last key served.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from store.posts import REPLY_TO_HANDLE, PostView, post_view

_COLUMNS = f"""p.post_id, p.author_id, p.reply_to, p.created_at, p.deleted_at IS NOT NULL AS deleted,
       CASE WHEN u.handle LIKE '~%' THEN '' ELSE coalesce(u.handle, '') END AS handle,
       coalesce(u.display_name, '') AS display_name, coalesce(u.avatar_url, '') AS avatar_url,
       p.body, p.html, p.text, p.hashtags, p.mentions,
       (SELECT count(*) FROM posts r WHERE r.reply_to = p.post_id AND r.deleted_at IS NULL) AS reply_count,
       {REPLY_TO_HANDLE}"""

_ANCESTORS = f"""
WITH RECURSIVE up(post_id, reply_to, depth) AS (
    SELECT post_id, reply_to, 0 FROM posts WHERE post_id = $1
    UNION ALL
    SELECT p.post_id, p.reply_to, up.depth + 1 FROM posts p JOIN up ON p.post_id = up.reply_to WHERE up.depth < $2
)
SELECT {_COLUMNS} FROM up JOIN posts p USING (post_id) LEFT JOIN users u ON u.user_id = p.author_id
WHERE up.depth > 0 ORDER BY up.depth DESC
"""

# Replies shown: live ones, and deleted ones that live replies hang below (so the chain stays whole).
_SHOWN = """(p.deleted_at IS NULL
    OR EXISTS (SELECT 1 FROM posts c WHERE c.reply_to = p.post_id AND c.deleted_at IS NULL))"""

_CHILDREN = f"""
WITH kids AS (
    SELECT p.*, (p.author_id <> $2)::int AS later,
           row_number() OVER (PARTITION BY p.reply_to ORDER BY (p.author_id <> $2), p.post_id) AS n
    FROM posts p WHERE p.reply_to = ANY($1::text[]) AND {_SHOWN} AND p.author_id NOT IN (SELECT unnest($4::text[]))
)
SELECT {_COLUMNS}, p.later FROM kids p LEFT JOIN users u ON u.user_id = p.author_id
WHERE p.n <= $3 ORDER BY p.reply_to, p.n
"""

_MORE_CHILDREN = f"""
WITH kids AS (
    SELECT p.*, (p.author_id <> $2)::int AS later FROM posts p
    WHERE p.reply_to = $1 AND {_SHOWN} AND ((p.author_id <> $2)::int, p.post_id) > ($3::int, $4::text)
      AND p.author_id NOT IN (SELECT unnest($6::text[]))
    ORDER BY (p.author_id <> $2), p.post_id LIMIT $5
)
SELECT {_COLUMNS}, p.later FROM kids p LEFT JOIN users u ON u.user_id = p.author_id ORDER BY p.later, p.post_id
"""


@dataclass(frozen=True, slots=True)
class Tombstone:
    """A deleted post in a conversation: where it was, not what it said."""

    id: str
    reply_to: str | None
    created_at: datetime


Shown = PostView | Tombstone


Key = tuple[int, str]  # (later, post id): a reply's place in its level


@dataclass
class Node:
    post: Shown
    later: int  # 0 for the original author's replies (shown first), 1 for everyone else's
    replies: list[Node] = field(default_factory=list)
    more: Key | None = None  # the key to continue this post's replies after (`FROM_START`: none shown yet)


FROM_START: Key = (-1, "")


def _shown(row: Mapping[str, Any]) -> Shown:
    if row["deleted"]:
        return Tombstone(row["post_id"], row["reply_to"], row["created_at"])
    return post_view(row)


def _node(row: Mapping[str, Any]) -> Node:
    return Node(_shown(row), row["later"])


def key(node: Node) -> Key:
    return node.later, node.post.id


class Threads:
    """Conversations on PostgreSQL (the posts and users tables)."""

    def __init__(self, pool: asyncpg.Pool, *, max_ancestors: int = 200) -> None:
        self._pool = pool
        self.max_ancestors = max_ancestors

    async def ancestors(self, post_id: str) -> list[Shown]:
        """From the root down to the parent (deleted ones as tombstones)."""
        return [_shown(r) for r in await self._pool.fetch(_ANCESTORS, post_id, self.max_ancestors)]

    async def replies(
        self, post_id: str, op: str, breadth: Sequence[int], after: Key | None = None, hidden: Sequence[str] = ()
    ) -> tuple[list[Node], Key | None]:
        """The reply tree below `post_id` by `op` first, `breadth[i]` replies per post at depth i (its length is
        the depth); with `after`, the first level continues after that key. Replies by `hidden` authors are left
        out, with the replies below them. Returns (nodes, key to continue)."""
        first = breadth[0]
        start = after or FROM_START
        rows = await self._pool.fetch(_MORE_CHILDREN, post_id, op, start[0], start[1], first + 1, list(hidden))
        top = [_node(r) for r in rows[:first]]
        more = key(top[-1]) if len(rows) > first else None
        level = top
        for width in breadth[1:]:
            if not level:
                break
            parents = {n.post.id: n for n in level}
            level = []
            for row in await self._pool.fetch(_CHILDREN, list(parents), op, width + 1, list(hidden)):
                parent = parents[row["reply_to"]]
                if len(parent.replies) == width:
                    parent.more = key(parent.replies[-1])
                    continue
                parent.replies.append(_node(row))
                level.append(parent.replies[-1])
        for node in level:  # the deepest level shown: whether replies lie below it
            if not isinstance(node.post, PostView) or node.post.reply_count:
                node.more = FROM_START
        return top, more
