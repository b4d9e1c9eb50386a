"""Conversations, read through the posts read model (either store): a post's ancestors (root first) and its replies
as a bounded tree.

- Ancestors follow `reply_to` upwards (one recursive query on PostgreSQL); a deleted post in the chain comes back as
  a tombstone (`deleted`), so the chain is never broken by a delete.
- Replies come one level per query, at most `breadth` per parent: each level the original author's replies
  first, then oldest first. A deleted reply shows only when live replies hang below it.
- A level continues with a keyset cursor on (not by the original author, post id): `after` is the last key served.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from store.posts import PostReadModel, PostView, Reply, Shown, Tombstone

__all__ = ["FROM_START", "Key", "Node", "Shown", "Threads", "Tombstone", "key"]

Key = tuple[int, str]  # (later, post id): a reply's place in its level


@dataclass
class Node:
    post: Shown
    later: int  # 0 for the original author's replies (shown first), 1 for everyone else's
    replies: list[Node] = field(default_factory=list)
    more: Key | None = None  # the key to continue this post's replies after (`FROM_START`: none shown yet)


FROM_START: Key = (-1, "")


def _node(reply: Reply) -> Node:
    return Node(*reply)


def key(node: Node) -> Key:
    return node.later, node.post.id


class Threads:
    """Conversations on the posts read model."""

    def __init__(self, posts: PostReadModel, *, max_ancestors: int = 200) -> None:
        self._posts = posts
        self.max_ancestors = max_ancestors

    async def ancestors(self, post_id: str) -> list[Shown]:
        """From the root down to the parent (deleted ones as tombstones)."""
        return await self._posts.ancestors(post_id, self.max_ancestors)

    async def replies(
        self, post_id: str, op: str, breadth: Sequence[int], after: Key | None = None, hidden: Sequence[str] = ()
    ) -> tuple[list[Node], Key | None]:
        """The reply tree below `post_id` by `op` first, `breadth[i]` replies per post at depth i (its length is
        the depth); with `after`, the first level continues after that key. Replies by `hidden` authors are left
        out, with the replies below them. Returns (nodes, key to continue)."""
        first = breadth[0]
        start = after or FROM_START
        rows = await self._posts.more_children(post_id, op, start, first + 1, hidden)
        top = [_node(r) for r in rows[:first]]
        more = key(top[-1]) if len(rows) > first else None
        level = top
        for width in breadth[1:]:
            if not level:
                break
            parents = {n.post.id: n for n in level}
            level = []
            for reply in await self._posts.children(list(parents), op, width + 1, hidden):
                parent = parents[reply[0].reply_to or ""]
                if len(parent.replies) == width:
                    parent.more = key(parent.replies[-1])
                    continue
                parent.replies.append(_node(reply))
                level.append(parent.replies[-1])
        for node in level:  # the deepest level shown: whether replies lie below it
            if not isinstance(node.post, PostView) or node.post.reply_count:
                node.more = FROM_START
        return top, more
