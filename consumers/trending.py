"""Trending hashtags and users, counted in Redis time buckets and ranked every few seconds.

In: post-parsed, post-deleted, user-followed, trending-moderated.  Out: Redis keys under `trending:{trending}:`
(store/trending.py), among them `trending:{trending}:ranking:{15m,1h,24h}`, the JSON `GET /api/trending` serves.
- Per hashtag: the distinct authors using it; per user: the distinct people drawing activity to them (their own
  posts, mentions received, new followers). 1-minute and 1-hour buckets keyed by event time: a post counts at its
  `created_at` (the post-created event's occurred_at, so a re-render does not move it), a follow at its occurred_at.
- "Now" is the newest post/follow time seen, not the wall clock, so replays and tests with synthetic times rank as
  they would have live (an event dated more than 5 minutes past the wall clock does not move it). At start it
  jumps to the newest post/follow at the tail of the topics, so a consumer starting on a long history (a replay, a
  new deployment) skips every event older than the two days its windows read instead of counting it and
  collecting it again.
- A refresher task (started in `on_setup`) recomputes the three rankings when the counts changed, at most every
  `REFRESH_S`, and deletes the buckets that fell out of every window (so a replay of a long history holds only
  the last two days of buckets); a deleted post is taken out of every bucket it counted in; hidden tags/users are
  left out.
Idempotency: a post's contributions and its tombstone are written by one Lua script each (a redelivery finds the
record and stops; a delete before the post leaves a tombstone the post then finds); a follow is a hash field per
follower; moderation is last-writer-wins by (occurred_at, event id). Replays rebuild the same keys: every key is a
function of the prefix (`ctx.trending_prefix`, default `trending:{trending}:`), so a replay can build elsewhere.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from chirp.logging import get_logger
from consumers.runtime import Consumer, Context, PermanentError, newest_events
from schemas import topics
from schemas.events import Event, PostDeleted, PostParsed, TrendingModerated, UserFollowed
from store.trending import DEFAULT_PREFIX, Follow, PostActivity, RedisTrending, moderation_target

log = get_logger("chirp.trending")
consumer = Consumer(
    "trending",
    "Distinct authors per hashtag and activity per user in time buckets; rankings.",
    # Everything under `trending:`, the keys' home before they had a hash tag too, so a rebuild clears those.
    redis_prefixes=(DEFAULT_PREFIX.split("{", 1)[0],),
    after=("users",),  # the ranking reads handles from `users`
    gather=True,
)

REFRESH_S = 2.0
_tasks: set[asyncio.Task[Any]] = set()


def counts_of(ctx: Context) -> RedisTrending:
    """The trending counts this context writes (under `ctx.trending_prefix`)."""
    return ctx.trending


def activity(event: PostParsed) -> PostActivity:
    """What a parsed post contributes: its tags and mentions, by its author, at its creation time (an edit's version
    replaces an older one's)."""
    data = event.payload
    version = data.edited_at.timestamp() if data.edited_at else 0.0
    at = data.created_at.timestamp()
    return PostActivity(data.post_id, data.author_id, at, data.hashtags, data.mentions, version)


async def refresh_forever(counts: RedisTrending, pg: asyncpg.Pool | None, every: float = REFRESH_S) -> None:
    """Recompute the rankings whenever the counts changed, checking every `every` seconds, until cancelled (or until
    the context's pool closes: a replay's shadow context ends before its process does)."""
    while pg is None or not pg.is_closing():
        try:
            # The marker lives next to the rankings (not in this process), so a replay swapping both in stays right.
            if await counts.stale():
                await counts.refresh(pg)
            await counts.collect()
        except Exception as exc:  # an outage must not end the loop: the next tick tries again
            if pg is not None and pg.is_closing():
                return  # the context ended during this refresh (a replay finishing): nothing failed
            log.warning("trending refresh failed", error=repr(exc))
        await asyncio.sleep(every)


def activity_time(event: Event) -> float | None:
    """The time an event counts at (a post at its creation, a follow when it happened); None if it counts nowhere."""
    if isinstance(event, PostParsed):
        return event.payload.created_at.timestamp()
    if isinstance(event, UserFollowed):
        return event.occurred_at.timestamp()
    return None


async def skip_to_tail(ctx: Context, me: Consumer) -> None:
    """Move `now` to the newest post/follow at the tail of the topics `me` reads."""
    times = [t for e in await newest_events(ctx.settings, me, ctx.keys) if (t := activity_time(e)) is not None]
    if times:
        await counts_of(ctx).advance(max(times))


@consumer.on_setup
async def start(ctx: Context, me: Consumer) -> None:
    """Skip to the tail of the log, then start the ranking refresher of this process."""
    await skip_to_tail(ctx, me)
    task = asyncio.create_task(refresh_forever(counts_of(ctx), ctx.pg))
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


@consumer.on_before_swap
async def rank_before_swap(ctx: Context, client: aioredis.Redis, root: str) -> None:
    """A replay's shadow rankings, computed from its complete counts just before they go live (the refresher's
    last pass may predate the last events, or the counts altogether): readers never get a half-built answer.
    `client` does not rewrite names: the keys are named under the shadow `root` here."""
    await RedisTrending(client, root + counts_of(ctx).p).refresh(ctx.pg)


@consumer.on(topics.POST_PARSED, batch=True)
async def on_post_parsed(events: list[PostParsed], ctx: Context) -> None:
    """Count each post's author per tag and the activity it draws per user."""
    await counts_of(ctx).add_posts([activity(e) for e in events])


@consumer.on(topics.POST_DELETED, batch=True)
async def on_post_deleted(events: list[PostDeleted], ctx: Context) -> None:
    """Take deleted posts out of every bucket (or tombstone them before they arrive)."""
    await counts_of(ctx).remove_posts([(e.payload.post_id, e.payload.author_id) for e in events])


@consumer.on(topics.USER_FOLLOWED, batch=True)
async def on_user_followed(events: list[UserFollowed], ctx: Context) -> None:
    """Count each new follower of a user."""
    follows = [Follow(e.payload.follower_id, e.payload.followee_id, e.occurred_at.timestamp()) for e in events]
    await counts_of(ctx).add_follows(follows)


@consumer.on(topics.TRENDING_MODERATED)
async def on_trending_moderated(event: TrendingModerated, ctx: Context) -> None:
    """Hide or show a tag or user in every window."""
    target = moderation_target(event.payload.target)
    if target is None:
        raise PermanentError(f"not a #tag or @handle: {event.payload.target!r}")
    at_us = int(event.occurred_at.timestamp() * 1_000_000)
    await counts_of(ctx).moderate(target, event.payload.hidden, at_us, event.id)
