"""The notifications read model's Redis layout (written by consumers/notifications.py, read by the gateway).

Per user a sorted set of item ids by the item's latest time (at most `KEPT`) and one of the unread ones; per item a
hash (type, post) and a sorted set of its actors by time; `BELL_CHANNEL` announces a user's new unread count.
The consumer's own bookkeeping is per user too and bounded like the items: who was notified of what (`by_key`, one
field per actor of a kept item), the open group of each grouped type and post (`groups_key`, one per kept item),
the newest `KEPT` undo times (`retracted_key`) and read marks (`marks_key`).
A user's keys carry the Redis Cluster hash tag `{user_id}` (as their hidden set in store/relations.py does, which
the reads intersect with the actors), a post's keys `{post_id}`.
"""

from __future__ import annotations

from schemas.topics import NAMESPACE

BELL_CHANNEL = f"chirp:{NAMESPACE}notifications"  # {"user_id", "unread"} when a user's unread count moves
SHOWN_ACTORS = 3  # the latest actors an item shows
KEPT = 1000  # the newest items kept per user; older ones are dropped as new ones arrive


def items_key(user_id: str) -> str:
    return f"notify:items:{{{user_id}}}"


def unread_key(user_id: str) -> str:
    return f"notify:unread:{{{user_id}}}"


def item_key(user_id: str, item_id: str) -> str:
    return f"notify:item:{{{user_id}}}:{item_id}"


def actors_key(user_id: str, item_id: str) -> str:
    return f"notify:actors:{{{user_id}}}:{item_id}"


def readmark_key(user_id: str) -> str:
    return f"notify:readmark:{{{user_id}}}"


def tombstone_key(post_id: str) -> str:
    return f"notify:deleted:{{{post_id}}}"


def post_items_key(post_id: str) -> str:
    """Which items point at a post (members `<user> <item>`), so a delete finds them: the post's own items, and the
    reply and quote items of posts answering it (a ref left after such an item went otherwise is harmless: dropping
    a missing item changes nothing)."""
    return f"notify:post:{{{post_id}}}"


def by_key(user_id: str) -> str:
    """Hash: `<type> <actor> <target>` -> the item's id, for each actor of a kept item."""
    return f"notify:by:{{{user_id}}}"


def retracted_key(user_id: str) -> str:
    """Sorted set: `<type> <actor> <target>` scored by the time of its newest undo (the newest `KEPT`)."""
    return f"notify:retracted:{{{user_id}}}"


def groups_key(user_id: str) -> str:
    """Hash: `<type> <post>` -> the newest item of that group (likes or reposts of one post)."""
    return f"notify:groups:{{{user_id}}}"


def marks_key(user_id: str) -> str:
    """Sorted set: each read mark's `up_to` time (ms) scored by when it was made (ms); the newest `KEPT`."""
    return f"notify:marks:{{{user_id}}}"
