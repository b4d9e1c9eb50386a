"""Notifications: for each user, what others did that concerns them, newest first: mentions, replies, quotes,
follows, likes and reposts of their posts.

In: post-parsed (mentions, replies, quotes), post-deleted, user-followed, user-unfollowed, post-likes, post-reposts,
notifications-read, account-deleted (the account's own items go; what it caused in others' lists goes with the
derived undo events).
Out: Redis, all under `notify:` — per user a sorted set of item ids scored by the item's latest time
(`notify:items:<user>`) and the unread ones (`notify:unread:<user>`, so the unread count is one ZCARD); per item a
hash (type, post) and a sorted set of its actors by time. Grouped types (`GROUPED`) add an actor to the open item
of the same type and post while it is unread, as Mastodon's grouped notifications do; every other is one item.
Each type is one handler turning its events into `Note`s; `_add` and `_retract` are the only writers. A user keeps
their newest `KEPT` items: older ones are dropped as new ones come (store/notifications.py).
Idempotency: an item's id comes from the log (the post id, or the event id), `notify:by:` records which
(user, type, actor, target) was notified so a redelivery is a no-op, and `notify:retracted:` the time of an undo
(unfollow, unlike, unrepost) so an undo read before its action still wins; a tombstone per deleted post keeps its
items away.
Read marks are events too (`notifications-read`), so a replay rebuilds the read state; a mark reads everything at
or before its time, whichever of the mark and the items is applied first. Each change of a user's unread count is
announced on Redis pub/sub (`BELL_CHANNEL`) for the bell in the pages. The key layout is in store/notifications.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from consumers.runtime import Consumer, Context
from schemas import topics
from schemas.events import (
    AccountDeleted,
    NotificationsRead,
    PostDeleted,
    PostLike,
    PostParsed,
    PostRepost,
    UserFollowed,
    UserUnfollowed,
)
from store.notifications import (
    BELL_CHANNEL,
    KEPT,
    actors_key,
    item_key,
    items_key,
    post_items_key,
    readmark_key,
    tombstone_key,
    unread_key,
)

# The read model, for `chirp replay notifications`: Redis keys under this prefix, rebuilt after users and posts.
consumer = Consumer(
    "notifications",
    "Per-user notifications in Redis (mentions, replies, quotes, follows, likes, reposts), grouped, with read state"
    " and unread counts.",
    redis_prefixes=("notify:",),
    after=("users", "posts"),
)
GROUPED = frozenset({"like", "repost"})  # one item per post while unread; every other type is one item each


@dataclass(frozen=True, slots=True)
class Note:
    """One actor's action notifying one user: `target` is the post, or "" for a follow."""

    user_id: str
    type: str
    actor_id: str
    at: int  # milliseconds since the epoch
    item_id: str  # the id of the item it makes when it starts one
    target: str = ""

    @property
    def by(self) -> str:
        return f"notify:by:{{{self.user_id}}}:{self.type}:{self.actor_id}:{self.target}"

    @property
    def retracted(self) -> str:
        return f"notify:retracted:{{{self.user_id}}}:{self.type}:{self.actor_id}:{self.target}"

    @property
    def group(self) -> str:
        return f"notify:group:{{{self.user_id}}}:{self.type}:{self.target}"


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


# The writers --------------------------------------------------------------------------------------------------


async def _ring(ctx: Context, user_ids: Iterable[str]) -> None:
    """Announce these users' unread counts (nobody listens to a replay's shadow copy, so it says nothing)."""
    users = sorted(set(user_ids))
    if not users or not ctx.announcing:
        return
    async with ctx.redis.pipeline(transaction=False) as pipe:
        for user_id in users:
            pipe.zcard(unread_key(user_id))
        counts = await pipe.execute()
    async with ctx.redis.pipeline(transaction=False) as pipe:
        for user_id, count in zip(users, counts, strict=True):
            pipe.publish(BELL_CHANNEL, orjson.dumps({"user_id": user_id, "unread": count}))
        await pipe.execute()


async def _add(ctx: Context, notes: Iterable[Note]) -> None:
    """Record notes (none for one's own actions), each once, grouping the grouped types into open items."""
    notes = [n for n in notes if n.user_id != n.actor_id]
    if not notes:
        return
    async with ctx.redis.pipeline(transaction=False) as pipe:
        for n in notes:
            pipe.exists(n.by)
            pipe.get(n.retracted)
            pipe.get(readmark_key(n.user_id))
            pipe.exists(tombstone_key(n.target or "-"))
            pipe.get(n.group)
        found = await pipe.execute()
    rows = [found[i : i + 5] for i in range(0, len(found), 5)]
    async with ctx.redis.pipeline(transaction=False) as pipe:  # is each grouped note's open item still unread?
        for n, row in zip(notes, rows, strict=True):
            pipe.zscore(unread_key(n.user_id), row[4] or "-")
        open_unread = await pipe.execute()
    opened: dict[str, str] = {}  # group key -> item id, for groups this batch opens
    seen: set[str] = set()
    async with ctx.redis.pipeline(transaction=False) as pipe:
        for n, (done, retracted_at, readmark, gone, group_item), unread in zip(notes, rows, open_unread, strict=True):
            if done or n.by in seen or gone or (retracted_at and int(retracted_at) >= n.at):
                continue
            seen.add(n.by)
            item_id = n.item_id
            if n.type in GROUPED:
                item_id = opened.get(n.group) or (group_item if unread is not None else None) or n.item_id
                opened[n.group] = item_id
                pipe.set(n.group, item_id)
            pipe.hset(item_key(n.user_id, item_id), mapping={"type": n.type, "post": n.target})
            pipe.zadd(actors_key(n.user_id, item_id), {n.actor_id: n.at})
            pipe.zadd(items_key(n.user_id), {item_id: n.at}, gt=True)
            if readmark is None or n.at > int(readmark):
                pipe.zadd(unread_key(n.user_id), {item_id: n.at}, gt=True)
            pipe.set(n.by, item_id)
            if n.target:
                pipe.sadd(post_items_key(n.target), f"{n.user_id} {item_id}")
        await pipe.execute()
    touched = {n.user_id for n in notes if n.by in seen}
    await _trim(ctx, touched)
    await _ring(ctx, touched)


async def _trim(ctx: Context, user_ids: Iterable[str]) -> None:
    """Drop each user's items past their newest `KEPT`, so a list (and its memory) stays bounded."""
    users = sorted(set(user_ids))
    async with ctx.redis.pipeline(transaction=False) as pipe:
        for user_id in users:
            pipe.zrange(items_key(user_id), 0, -KEPT - 1)  # the oldest, past the newest KEPT
        old = await pipe.execute()
    excess = [(user_id, item_id) for user_id, ids in zip(users, old, strict=True) for item_id in ids]
    if not excess:
        return
    async with ctx.redis.pipeline(transaction=False) as pipe:
        for user_id, item_id in excess:
            pipe.hget(item_key(user_id, item_id), "post")
        posts = await pipe.execute()
    async with ctx.redis.pipeline(transaction=False) as pipe:
        for (user_id, item_id), post_id in zip(excess, posts, strict=True):
            _drop(pipe, user_id, item_id)
            if post_id:
                pipe.srem(post_items_key(post_id), f"{user_id} {item_id}")
        await pipe.execute()


def _drop(pipe: Any, user_id: str, item_id: str) -> None:
    """Queue the removal of one whole item."""
    pipe.zrem(items_key(user_id), item_id)
    pipe.zrem(unread_key(user_id), item_id)
    pipe.delete(item_key(user_id, item_id), actors_key(user_id, item_id))


async def _retract(ctx: Context, notes: Iterable[Note]) -> None:
    """Undo notes (an unfollow, unlike, unrepost): the actor leaves its item, and the item goes when it was the only
    actor."""
    notes = [n for n in notes if n.user_id != n.actor_id]
    if not notes:
        return
    async with ctx.redis.pipeline(transaction=False) as pipe:
        for n in notes:
            pipe.get(n.by)
            pipe.get(n.retracted)
        found = await pipe.execute()
    async with ctx.redis.pipeline(transaction=False) as pipe:
        for n, item_id, retracted_at in zip(notes, found[0::2], found[1::2], strict=True):
            if retracted_at is None or int(retracted_at) < n.at:
                pipe.set(n.retracted, n.at)
            if item_id:
                pipe.delete(n.by)
                pipe.zrem(actors_key(n.user_id, item_id), n.actor_id)
                pipe.zrevrange(actors_key(n.user_id, item_id), 0, 0, withscores=True)
        left = [r for r in await pipe.execute() if isinstance(r, list)]
    touched = [(n, item_id) for n, item_id in zip(notes, found[0::2], strict=True) if item_id]
    async with ctx.redis.pipeline(transaction=False) as pipe:
        for (n, item_id), latest in zip(touched, left, strict=True):
            if not latest:
                _drop(pipe, n.user_id, item_id)
                if n.target:
                    pipe.srem(post_items_key(n.target), f"{n.user_id} {item_id}")
            else:  # the item now dates from its latest remaining actor
                pipe.zadd(items_key(n.user_id), {item_id: latest[0][1]}, xx=True)
                pipe.zadd(unread_key(n.user_id), {item_id: latest[0][1]}, xx=True)
        await pipe.execute()
    await _ring(ctx, (n.user_id for n, _ in touched))


# Handlers: each type turns its events into notes ----------------------------------------------------------------


async def _user_ids(ctx: Context, handles: set[str]) -> dict[str, str]:
    rows = await ctx.pg.fetch(
        "SELECT lower(handle) AS handle, user_id FROM users WHERE lower(handle) = ANY($1::text[])", sorted(handles)
    )
    return {r["handle"]: r["user_id"] for r in rows}


async def _authors(ctx: Context, post_ids: set[str]) -> dict[str, str]:
    """The authors of live posts (read from the posts model)."""
    return await ctx.posts.authors_of(sorted(post_ids))


@consumer.on(topics.POST_PARSED, batch=True)
async def on_post_parsed(events: list[PostParsed], ctx: Context) -> None:
    """`reply` to the parent's author, `quote` to the quoted post's author, `mention` to everyone else it names:
    one item per person and post (a reply that also mentions or quotes its parent's author is one `reply`).
    An edit's render notifies only those it names anew (at the edit's time): the others were notified already."""
    events = [e for e in events if e.payload.mentions or e.payload.reply_to or e.payload.quote_of]
    if not events:
        return
    user_ids = await _user_ids(ctx, {h.lower() for e in events for h in e.payload.mentions})
    parents = await _authors(ctx, {p for e in events for p in (e.payload.reply_to, e.payload.quote_of) if p})
    notes: list[Note] = []
    for event in events:
        data = event.payload
        at, told = ms(data.edited_at or data.created_at), set[str]()
        for kind, parent in (("reply", data.reply_to), ("quote", data.quote_of)):
            if (author := parents.get(parent or "")) and author not in told:
                notes.append(Note(author, kind, data.author_id, at, data.post_id, data.post_id))
                told.add(author)
        for uid in sorted({user_ids[h.lower()] for h in data.mentions if h.lower() in user_ids} - told):
            notes.append(Note(uid, "mention", data.author_id, at, data.post_id, data.post_id))
    await _add(ctx, notes)


@consumer.on(topics.USER_FOLLOWED, batch=True)
async def on_followed(events: list[UserFollowed], ctx: Context) -> None:
    await _add(ctx, (_follow(e) for e in events))


@consumer.on(topics.USER_UNFOLLOWED, batch=True)
async def on_unfollowed(events: list[UserUnfollowed], ctx: Context) -> None:
    await _retract(ctx, (_follow(e) for e in events))


def _follow(event: UserFollowed | UserUnfollowed) -> Note:
    data = event.payload
    return Note(data.followee_id, "follow", data.follower_id, ms(event.occurred_at), event.id)


async def _interactions(events: list[PostLike] | list[PostRepost], kind: str, ctx: Context) -> None:
    """Likes or reposts of a post notify its author, grouped; an undo takes the actor away. Only each
    (actor, post)'s newest event of the batch counts: the earlier ones are what it replaced."""
    newest: dict[tuple[str, str], PostLike | PostRepost] = {}
    for event in events:
        key = (event.payload.user_id, event.payload.post_id)
        if key not in newest or event.occurred_at >= newest[key].occurred_at:
            newest[key] = event
    authors = await _authors(ctx, {post_id for _, post_id in newest})
    done: list[Note] = []
    undone: list[Note] = []
    for (actor, post_id), event in newest.items():
        if (author := authors.get(post_id)) is None:
            continue  # the post is gone: nothing to tell
        note = Note(author, kind, actor, ms(event.occurred_at), event.id, post_id)
        (undone if event.type.startswith("post-un") else done).append(note)
    await _retract(ctx, undone)
    await _add(ctx, done)


@consumer.on(topics.POST_LIKES, batch=True)
async def on_likes(events: list[PostLike], ctx: Context) -> None:
    await _interactions(events, "like", ctx)


@consumer.on(topics.POST_REPOSTS, batch=True)
async def on_reposts(events: list[PostRepost], ctx: Context) -> None:
    await _interactions(events, "repost", ctx)


@consumer.on(topics.POST_DELETED, batch=True)
async def on_post_deleted(events: list[PostDeleted], ctx: Context) -> None:
    """A deleted post takes its items with it (in every user's list), now and when its events come again."""
    post_ids = sorted({e.payload.post_id for e in events})
    async with ctx.redis.pipeline(transaction=False) as pipe:
        for post_id in post_ids:
            pipe.set(tombstone_key(post_id), "1")
            pipe.smembers(post_items_key(post_id))
        found = (await pipe.execute())[1::2]
    refs = [
        (post_id, *ref.partition(" ")[::2])
        for post_id, found_refs in zip(post_ids, found, strict=True)
        for ref in found_refs
    ]
    async with ctx.redis.pipeline(transaction=False) as pipe:
        for _, user_id, item_id in refs:
            _drop(pipe, user_id, item_id)
        for post_id in post_ids:
            pipe.delete(post_items_key(post_id))
        await pipe.execute()
    await _ring(ctx, (user_id for _, user_id, _ in refs))


@consumer.on(topics.NOTIFICATIONS_READ, batch=True)
async def on_read(events: list[NotificationsRead], ctx: Context) -> None:
    """Everything at or before the mark is read; the mark stays, for items that arrive (or replay) later."""
    marks: dict[str, int] = {}
    for event in events:
        user_id = event.payload.user_id
        marks[user_id] = max(marks.get(user_id, 0), ms(event.payload.up_to_at))
    async with ctx.redis.pipeline(transaction=False) as pipe:
        for user_id in marks:
            pipe.get(readmark_key(user_id))
        before = await pipe.execute()
    async with ctx.redis.pipeline(transaction=False) as pipe:
        for (user_id, mark), old in zip(marks.items(), before, strict=True):
            if old is None or int(old) < mark:
                pipe.set(readmark_key(user_id), mark)
            pipe.zremrangebyscore(unread_key(user_id), "-inf", mark)
        await pipe.execute()
    await _ring(ctx, marks)


@consumer.on(topics.ACCOUNT_DELETED, batch=True)
async def on_account_deleted(events: list[AccountDeleted], ctx: Context) -> None:
    """A deleted account's own notifications, read mark and unread set go."""
    for event in events:
        user_id = event.payload.user_id
        items = await ctx.redis.zrange(items_key(user_id), 0, -1)
        stale = [k for item in map(str, items) for k in (item_key(user_id, item), actors_key(user_id, item))]
        await ctx.redis.delete(items_key(user_id), unread_key(user_id), readmark_key(user_id), *stale)
