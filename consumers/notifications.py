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
Idempotency: an item's id comes from the log (the post id, or the event id); a record per (user, type, actor,
target) makes a redelivery a no-op, and the time of an undo (unfollow, unlike, unrepost, a mention an edit removed)
makes an undo read before its action still win; a tombstone per deleted post keeps its items away. This bookkeeping
is bounded like the items: records go with their item, and a user keeps their newest `KEPT` undos and read marks.
Read marks are events too (`notifications-read`, keyed by user), so a replay rebuilds the read state and the
grouping: a like joins its post's open item unless a read mark made between the item's latest action and the like
read that item. That depends on the times in the log, not on which topic a replay reads first: a mark applied after
later likes splits them off into the item they would have started. Each change of a user's unread count is
announced on Redis pub/sub (`BELL_CHANNEL`) for the bell in the pages. The key layout is in store/notifications.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

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
    by_key,
    groups_key,
    item_key,
    items_key,
    marks_key,
    post_items_key,
    readmark_key,
    retracted_key,
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
    gather="brief",  # a like or a mention shows within tens of ms either way, with fewer fetches per event
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
    parent: str = ""  # the post a reply or quote answers: its deletion takes the item too (`on_post_deleted`)

    @property
    def field(self) -> str:  # in the user's `by` hash and undo times
        return f"{self.type} {self.actor_id} {self.target}"

    @property
    def group(self) -> str:  # in the user's open groups
        return f"{self.type} {self.target}"


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _read_between(marks: list[tuple[int, int]], latest: int, at: int) -> bool:
    """Did a read mark (up_to, made) made in [latest, at) read an item whose latest action was at `latest`?"""
    return any(latest <= made < at and up_to >= latest for up_to, made in marks)


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
            pipe.hexists(by_key(n.user_id), n.field)
            pipe.zscore(retracted_key(n.user_id), n.field)
            pipe.get(readmark_key(n.user_id))
            pipe.exists(tombstone_key(n.target or "-"))
            pipe.hget(groups_key(n.user_id), n.group)
        found = await pipe.execute()
    rows = [found[i : i + 5] for i in range(0, len(found), 5)]
    grouped = [n for n in notes if n.type in GROUPED]
    grouped_rows = [row for n, row in zip(notes, rows, strict=True) if n.type in GROUPED]
    async with ctx.redis.pipeline(transaction=False) as pipe:  # each group's open item, and the read marks around
        for n, row in zip(notes, rows, strict=True):
            if n.type in GROUPED:
                pipe.zrange(actors_key(n.user_id, row[4] or "-"), 0, 0, withscores=True)
                pipe.zrevrange(actors_key(n.user_id, row[4] or "-"), 0, 0, withscores=True)
        readers = sorted({n.user_id for n in grouped})
        for user_id in readers:
            pipe.zrange(marks_key(user_id), 0, -1, withscores=True)
        around = await pipe.execute()
    spans = {  # (user, group) -> (open item, its first and latest times), as this batch goes
        (n.user_id, n.group): (row[4], int(first[0][1]), int(last[0][1]))
        for n, row, first, last in zip(
            grouped, grouped_rows, around[0 : 2 * len(grouped) : 2], around[1 : 2 * len(grouped) : 2], strict=True
        )
        if first and last
    }
    found_marks = around[2 * len(grouped) :]
    marks = {u: [(int(m), int(w)) for m, w in found] for u, found in zip(readers, found_marks, strict=True)}
    seen: set[tuple[str, str]] = set()
    async with ctx.redis.pipeline(transaction=False) as pipe:
        for n, (done, retracted_at, readmark, gone, _) in zip(notes, rows, strict=True):
            if done or (n.user_id, n.field) in seen or gone or (retracted_at and int(retracted_at) >= n.at):
                continue
            seen.add((n.user_id, n.field))
            item_id = n.item_id
            if n.type in GROUPED:
                item_id, newest = _place(n, spans, marks.get(n.user_id, []))
                if newest:
                    pipe.hset(groups_key(n.user_id), n.group, item_id)
            pipe.hset(item_key(n.user_id, item_id), mapping={"type": n.type, "post": n.target})
            pipe.zadd(actors_key(n.user_id, item_id), {n.actor_id: n.at})
            pipe.zadd(items_key(n.user_id), {item_id: n.at}, gt=True)
            if readmark is None or n.at > int(readmark):
                pipe.zadd(unread_key(n.user_id), {item_id: n.at}, gt=True)
            pipe.hset(by_key(n.user_id), n.field, item_id)
            for post in {n.target, n.parent} - {""}:
                pipe.sadd(post_items_key(post), f"{n.user_id} {item_id}")
        await pipe.execute()
    touched = {user_id for user_id, _ in seen}
    await _trim(ctx, touched)
    await _ring(ctx, touched)


def _place(
    n: Note, spans: dict[tuple[str, str], tuple[str, int, int]], marks: list[tuple[int, int]]
) -> tuple[str, bool]:
    """The item a grouped note belongs in, and whether that is now the group's newest. It joins the group's open item
    unless a read mark (up_to, made) read one side before the other side happened."""
    key = (n.user_id, n.group)
    if key in spans:
        item_id, first, latest = spans[key]
        if n.at < first and _read_between(marks, n.at, first):
            return _segment(n, marks), False  # an older part, read before the open item began (a replay)
        if not (n.at > latest and _read_between(marks, latest, n.at)):
            spans[key] = (item_id, min(first, n.at), max(latest, n.at))
            return item_id, False
    item_id = _segment(n, marks)  # the first, or the open item was read before this: a new one
    spans[key] = (item_id, n.at, n.at)
    return item_id, True


def _segment(n: Note, marks: list[tuple[int, int]]) -> str:
    """A grouped item's id: its type and post, and the last read mark made before its first action, if any: the
    same whichever order a replay reads likes and marks in."""
    made = max((w for _, w in marks if w < n.at), default=None)
    return n.group.replace(" ", ":") + ("" if made is None else f":{made}")


async def _trim(ctx: Context, user_ids: Iterable[str]) -> None:
    """Drop each user's items past their newest `KEPT`, so a list (and its memory) stays bounded."""
    users = sorted(set(user_ids))
    async with ctx.redis.pipeline(transaction=False) as pipe:
        for user_id in users:
            pipe.zrange(items_key(user_id), 0, -KEPT - 1)  # the oldest, past the newest KEPT
        old = await pipe.execute()
    await _drop(ctx, [(user_id, item_id) for user_id, ids in zip(users, old, strict=True) for item_id in ids])


async def _drop(ctx: Context, items: list[tuple[str, str]]) -> None:
    """Remove whole items (user id, item id) with their bookkeeping: who was notified, the group, the post's refs."""
    if not items:
        return
    async with ctx.redis.pipeline(transaction=False) as pipe:
        for user_id, item_id in items:
            pipe.hgetall(item_key(user_id, item_id))
            pipe.zrange(actors_key(user_id, item_id), 0, -1)
        found = await pipe.execute()
    infos, actors = found[0::2], found[1::2]
    async with ctx.redis.pipeline(transaction=False) as pipe:
        for (user_id, _), info in zip(items, infos, strict=True):
            pipe.hget(groups_key(user_id), f"{info.get('type', '')} {info.get('post', '')}")
        groups = await pipe.execute()
    async with ctx.redis.pipeline(transaction=False) as pipe:
        for (user_id, item_id), info, who, group in zip(items, infos, actors, groups, strict=True):
            kind, post = info.get("type", ""), info.get("post", "")
            pipe.zrem(items_key(user_id), item_id)
            pipe.zrem(unread_key(user_id), item_id)
            pipe.delete(item_key(user_id, item_id), actors_key(user_id, item_id))
            if who:
                pipe.hdel(by_key(user_id), *(f"{kind} {actor} {post}" for actor in who))
            if group == item_id:
                pipe.hdel(groups_key(user_id), f"{kind} {post}")
            if post:
                pipe.srem(post_items_key(post), f"{user_id} {item_id}")
        await pipe.execute()


async def _retract(ctx: Context, notes: Iterable[Note]) -> None:
    """Undo notes (an unfollow, unlike, unrepost, a mention an edit removed): the actor leaves its item, and the item
    goes when it was the only actor. The undo's time stays (the user's newest `KEPT`), so its action, read later,
    is a no-op."""
    notes = [n for n in notes if n.user_id != n.actor_id]
    if not notes:
        return
    async with ctx.redis.pipeline(transaction=False) as pipe:
        for n in notes:
            pipe.hget(by_key(n.user_id), n.field)
            pipe.zadd(retracted_key(n.user_id), {n.field: n.at}, gt=True)
            pipe.zremrangebyrank(retracted_key(n.user_id), 0, -KEPT - 1)
        found = (await pipe.execute())[0::3]
    touched = [(n, item_id) for n, item_id in zip(notes, found, strict=True) if item_id]
    async with ctx.redis.pipeline(transaction=False) as pipe:
        for n, item_id in touched:
            pipe.hdel(by_key(n.user_id), n.field)
            pipe.zrem(actors_key(n.user_id, item_id), n.actor_id)
            pipe.zrevrange(actors_key(n.user_id, item_id), 0, 0, withscores=True)
        left = [r for r in await pipe.execute() if isinstance(r, list)]
    async with ctx.redis.pipeline(transaction=False) as pipe:
        for (n, item_id), latest in zip(touched, left, strict=True):
            if latest:  # the item now dates from its latest remaining actor
                pipe.zadd(items_key(n.user_id), {item_id: latest[0][1]}, xx=True)
                pipe.zadd(unread_key(n.user_id), {item_id: latest[0][1]}, xx=True)
        await pipe.execute()
    await _drop(ctx, [(n.user_id, item_id) for (n, item_id), latest in zip(touched, left, strict=True) if not latest])
    await _ring(ctx, (n.user_id for n, _ in touched))


async def _split(ctx: Context, user_id: str, made: int, up_to: int) -> None:
    """A read mark (read at or before `up_to`, made at `made`) applied after actions that came later (a replay read
    the marks' topic late): what came after it in an item it read goes to the item it would have started, and an
    item that began after it takes the id that names this mark (`_segment`), as live."""
    found: list[str] = await ctx.redis.zrangebyscore(items_key(user_id), f"({made}", "+inf")  # type: ignore[assignment]
    async with ctx.redis.pipeline(transaction=False) as pipe:
        for item_id in found:
            pipe.hgetall(item_key(user_id, item_id))
            pipe.zrange(actors_key(user_id, item_id), 0, -1, withscores=True)
        details = await pipe.execute()
    for item_id, info, actors in zip(found, details[0::2], details[1::2], strict=True):
        kind, post = info.get("type", ""), info.get("post", "")
        new_id = f"{kind}:{post}:{made}"
        before = [int(t) for _, t in actors if t <= made]
        after = {a: int(t) for a, t in actors if t > made}
        if kind not in GROUPED or item_id == new_id or (before and max(before) > up_to):
            continue  # the mark did not read it
        async with ctx.redis.pipeline(transaction=False) as pipe:
            pipe.hset(item_key(user_id, new_id), mapping={"type": kind, "post": post})
            pipe.zadd(actors_key(user_id, new_id), after)  # type: ignore[arg-type]
            pipe.zadd(items_key(user_id), {new_id: max(after.values())})
            pipe.zadd(unread_key(user_id), {new_id: max(after.values())})  # newer than the mark (on_read trims)
            pipe.hset(by_key(user_id), mapping={f"{kind} {a} {post}": new_id for a in after})
            pipe.sadd(post_items_key(post), f"{user_id} {new_id}")
            if before:
                pipe.zrem(actors_key(user_id, item_id), *after)
                pipe.zadd(items_key(user_id), {item_id: max(before)})
                pipe.zrem(unread_key(user_id), item_id)
            else:
                pipe.zrem(items_key(user_id), item_id)
                pipe.zrem(unread_key(user_id), item_id)
                pipe.delete(item_key(user_id, item_id), actors_key(user_id, item_id))
                pipe.srem(post_items_key(post), f"{user_id} {item_id}")
            group = await ctx.redis.hget(groups_key(user_id), f"{kind} {post}")
            if group == item_id:
                pipe.hset(groups_key(user_id), f"{kind} {post}", new_id)
            await pipe.execute()


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
    An edit's render notifies only those it names anew (at the edit's time: the others were notified already), and
    takes back the mentions of those it no longer names."""
    events = [
        e for e in events if e.payload.mentions or e.payload.reply_to or e.payload.quote_of or e.payload.edited_at
    ]
    if not events:
        return
    user_ids = await _user_ids(ctx, {h.lower() for e in events for h in e.payload.mentions})
    parents = await _authors(ctx, {p for e in events for p in (e.payload.reply_to, e.payload.quote_of) if p})
    notes: list[Note] = []
    named: dict[str, tuple[int, set[str]]] = {}  # an edited post -> (the edit's time, whom it names)
    for event in events:
        data = event.payload
        at, told = ms(data.edited_at or data.created_at), set[str]()
        for kind, parent in (("reply", data.reply_to), ("quote", data.quote_of)):
            if (author := parents.get(parent or "")) and author not in told:
                notes.append(Note(author, kind, data.author_id, at, data.post_id, data.post_id, parent or ""))
                told.add(author)
        mentioned = {user_ids[h.lower()] for h in data.mentions if h.lower() in user_ids}
        for uid in sorted(mentioned - told):
            notes.append(Note(uid, "mention", data.author_id, at, data.post_id, data.post_id))
        if data.edited_at:
            named[data.post_id] = (at, mentioned)
    await _retract(ctx, await _unnamed(ctx, events, named))
    await _add(ctx, notes)


async def _unnamed(ctx: Context, events: list[PostParsed], named: dict[str, tuple[int, set[str]]]) -> list[Note]:
    """The mentions of edited posts whose newest version no longer names the person."""
    edited = [e.payload for e in events if e.payload.post_id in named]
    async with ctx.redis.pipeline(transaction=False) as pipe:
        for data in edited:
            pipe.smembers(post_items_key(data.post_id))
        refs = await pipe.execute()
    mentions = [  # a post's own items (mention, reply, quote) have its id
        (data, user_id)
        for data, found in zip(edited, refs, strict=True)
        for user_id, item_id in (ref.split(" ") for ref in found)
        if item_id == data.post_id and user_id not in named[data.post_id][1]
    ]
    async with ctx.redis.pipeline(transaction=False) as pipe:
        for data, user_id in mentions:
            pipe.hget(item_key(user_id, data.post_id), "type")
        kinds = await pipe.execute()
    return [
        Note(user_id, "mention", data.author_id, named[data.post_id][0], data.post_id, data.post_id)
        for (data, user_id), kind in zip(mentions, kinds, strict=True)
        if kind == "mention"
    ]


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
    """A deleted post takes its items with it (in every user's list), now and when its events come again, and the
    replies and quotes it was told of: a replay, which finds the post deleted, would not tell of them either."""
    post_ids = sorted({e.payload.post_id for e in events})
    async with ctx.redis.pipeline(transaction=False) as pipe:
        for post_id in post_ids:
            pipe.set(tombstone_key(post_id), "1")
            pipe.smembers(post_items_key(post_id))
        found = (await pipe.execute())[1::2]
    refs = [(user_id, item_id) for refs in found for user_id, item_id in (ref.split(" ") for ref in refs)]
    await _drop(ctx, refs)
    await ctx.redis.delete(*(post_items_key(post_id) for post_id in post_ids))
    await _ring(ctx, (user_id for user_id, _ in refs))


@consumer.on(topics.NOTIFICATIONS_READ, batch=True)
async def on_read(events: list[NotificationsRead], ctx: Context) -> None:
    """Everything at or before the mark is read; the mark stays (the user's newest `KEPT`), for items that arrive
    (or replay) later and for grouping. Marks come in order per user (keyed by user), each applied in turn."""
    for event in events:
        user_id, made, up_to = event.payload.user_id, ms(event.occurred_at), ms(event.payload.up_to_at)
        await _split(ctx, user_id, made, up_to)
        old = await ctx.redis.get(readmark_key(user_id))
        async with ctx.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(marks_key(user_id), {str(up_to): made}, lt=True)
            pipe.zremrangebyrank(marks_key(user_id), 0, -KEPT - 1)
            if old is None or int(old) < up_to:
                pipe.set(readmark_key(user_id), up_to)
            pipe.zremrangebyscore(unread_key(user_id), "-inf", max(up_to, int(old or 0)))
            await pipe.execute()
    await _ring(ctx, {e.payload.user_id for e in events})


@consumer.on(topics.ACCOUNT_DELETED, batch=True)
async def on_account_deleted(events: list[AccountDeleted], ctx: Context) -> None:
    """A deleted account's own notifications, read marks, unread set and bookkeeping go."""
    for event in events:
        user_id = event.payload.user_id
        items = await ctx.redis.zrange(items_key(user_id), 0, -1)
        stale = [k for item in map(str, items) for k in (item_key(user_id, item), actors_key(user_id, item))]
        own = (by_key, retracted_key, groups_key, marks_key, items_key, unread_key, readmark_key)
        await ctx.redis.delete(*(key(user_id) for key in own), *stale)
