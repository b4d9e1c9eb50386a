"""Interactions: likes, reposts, bookmarks and quotes of posts, with per-post counters.

In: post-likes, post-reposts, post-bookmarks (each carries both directions, e.g. post-liked / post-unliked),
post-parsed (its `quote_of`), post-deleted.
Out: PostgreSQL `interactions` (one row per post, kind, user), `quotes`, `post_counters` (store/interactions.py).
Idempotency: every (post, kind, user) row is last-writer-wins by occurred_at and the counters move by what an upsert
changed, so duplicates and out-of-order events leave the same state; a quote is one row per quoting post; a delete
tombstones the post, dropping its likes, reposts and bookmarks, and later events about it change nothing.
After each batch is committed (a deletion's too), what it changed is announced (store/interactions.py `CHANNEL`)
for caches.
"""

from __future__ import annotations

from datetime import datetime

from consumers.runtime import Consumer, Context
from schemas import topics
from schemas.events import PostBookmark, PostDeleted, PostLike, PostParsed, PostRepost
from store.interactions import Change, Kind, Quote, announce

consumer = Consumer(
    "interactions",
    "Likes, reposts, bookmarks and quotes of posts, with counters, in PostgreSQL.",
    tables=("interactions", "quotes", "post_counters"),
    reader_indexes=("interactions_by_user", "interactions_by_post", "quotes_of"),
    gather="brief",  # a like's count shows within tens of ms either way, with fewer fetches per event
)
ACTIVE = frozenset({"post-liked", "post-reposted", "post-bookmarked"})  # the other types undo one of these


def change(event: PostLike | PostRepost | PostBookmark, kind: Kind) -> Change:
    """The (post, kind, user) state after the event."""
    data = event.payload
    return Change(data.post_id, kind, data.user_id, event.type in ACTIVE, event.occurred_at)


async def _apply(ctx: Context, changes: list[Change]) -> None:
    await ctx.interactions.apply(changes)
    if ctx.announcing:
        await announce(ctx.redis, ((c.user_id, c.post_id, c.kind) for c in changes))


@consumer.on(topics.POST_LIKES, batch=True)
async def on_likes(events: list[PostLike], ctx: Context) -> None:
    await _apply(ctx, [change(e, "like") for e in events])


@consumer.on(topics.POST_REPOSTS, batch=True)
async def on_reposts(events: list[PostRepost], ctx: Context) -> None:
    await _apply(ctx, [change(e, "repost") for e in events])


@consumer.on(topics.POST_BOOKMARKS, batch=True)
async def on_bookmarks(events: list[PostBookmark], ctx: Context) -> None:
    await _apply(ctx, [change(e, "bookmark") for e in events])


@consumer.on(topics.POST_PARSED, batch=True)
async def on_post_parsed(events: list[PostParsed], ctx: Context) -> None:
    quotes = {e.payload.post_id: e.payload for e in events if e.payload.quote_of}
    found = [Quote(d.post_id, d.quote_of, d.created_at) for d in quotes.values() if d.quote_of]
    await ctx.interactions.add_quotes(found)
    if ctx.announcing:  # the quoting post gains `quote_of`, the quoted one a count
        changed = [(d.author_id, p, "quote") for d in quotes.values() for p in (d.post_id, d.quote_of) if p]
        await announce(ctx.redis, changed)


@consumer.on(topics.POST_DELETED, batch=True)
async def on_post_deleted(events: list[PostDeleted], ctx: Context) -> None:
    deleted: dict[str, datetime] = {}
    for event in events:  # the earliest delete of each post dates its tombstone, whatever the delivery order
        post_id = event.payload.post_id
        deleted[post_id] = min(deleted.get(post_id, event.occurred_at), event.occurred_at)
    moved = await ctx.interactions.delete_posts(deleted)
    if ctx.announcing:  # the deleted posts' counts, the quoted posts' counts, the quoting posts' `quote_of`
        authors = {e.payload.post_id: e.payload.author_id for e in events}
        changed = [(authors[p], p, "quote") for p in deleted] + [("", p, "quote") for p in moved]
        await announce(ctx.redis, changed)
