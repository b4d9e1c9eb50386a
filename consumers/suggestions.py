"""Who to follow: for each user, the people their followees follow, ranked by how many of their followees do.

In: user-followed, user-unfollowed.
Out: Redis, all under `suggest:` — the follow graph it needs (`suggest:following:<u>`, `suggest:followers:<u>`,
sets), per (user, candidate) the set of the user's followees who follow the candidate (`suggest:via:<u>:<c>`),
and per user a sorted set of candidates by that count (`suggest:rank:<u>`), without the user and whom they follow.
An edge A→B changes A's candidates (whom B follows) and the candidates of A's followers (B), so a follow costs
one write per follower of A and per followee of B; edges are applied one at a time under a lock of the process,
so the group runs as one process (a lease in Redis makes a second one refuse to start).
Idempotency: each pair's state is last-writer-wins by occurred_at (`suggest:edge:<a>:<b>` = "<0|1>:<ms>"), and
only a change of state moves the sets, so redeliveries, replays and an unfollow read before its follow agree.
"""

from __future__ import annotations

import asyncio

from consumers.runtime import Consumer, Context
from schemas import topics
from schemas.events import UserFollowed, UserUnfollowed
from store.suggestions import edge_key, followers_key, following_key, rank_key, via_key

# The read model, for `chirp replay suggestions`: Redis keys under this prefix.
consumer = Consumer(
    "suggestions",
    "Who to follow: per user, the people their followees follow, ranked by how many of them do.",
    redis_prefixes=("suggest:",),
    single_process=True,  # edges are applied one at a time under a lock of this process
)


_ONE_AT_A_TIME = asyncio.Lock()


async def _edge(ctx: Context, follower: str, followee: str, on: bool, at: int) -> None:
    """Apply one pair's state (`on`: following) as of `at`, if newer than what the model holds.

    Edges are applied one at a time (the runtime handles partitions side by side): an edge reads the sets that
    another edge writes, so two at once could each miss the other's candidates, or store a stale count.
    """
    if follower == followee:
        return
    async with _ONE_AT_A_TIME:
        await _apply(ctx, follower, followee, on, at)


async def _apply(ctx: Context, follower: str, followee: str, on: bool, at: int) -> None:
    previous: str | None = await ctx.redis.get(edge_key(follower, followee))  # type: ignore[assignment]
    if previous is not None and int(previous.split(":")[1]) >= at:
        return
    await ctx.redis.set(edge_key(follower, followee), f"{int(on)}:{at}")
    if previous is not None and previous.startswith("1:") == on:
        return
    a, b = follower, followee
    async with ctx.redis.pipeline(transaction=False) as pipe:
        pipe.smembers(followers_key(a))
        pipe.smembers(following_key(b))
        fans, followees_of_b = await pipe.execute()
    touched = [(a, c) for c in followees_of_b] + [(f, b) for f in fans] + [(a, b)]
    async with ctx.redis.pipeline(transaction=False) as pipe:
        (pipe.sadd if on else pipe.srem)(following_key(a), b)
        (pipe.sadd if on else pipe.srem)(followers_key(b), a)
        for c in followees_of_b:  # a's candidates through b
            (pipe.sadd if on else pipe.srem)(via_key(a, c), b)
        for f in fans:  # the candidates of a's followers through a
            (pipe.sadd if on else pipe.srem)(via_key(f, b), a)
        for user, candidate in touched:
            pipe.scard(via_key(user, candidate))
            pipe.sismember(following_key(user), candidate)
        found = (await pipe.execute())[-2 * len(touched) :]
    async with ctx.redis.pipeline(transaction=False) as pipe:
        for (user, candidate), count, follows in zip(touched, found[0::2], found[1::2], strict=True):
            if count and not follows and user != candidate:
                pipe.zadd(rank_key(user), {candidate: count})
            else:
                pipe.zrem(rank_key(user), candidate)
        await pipe.execute()


@consumer.on(topics.USER_FOLLOWED)
async def on_followed(event: UserFollowed, ctx: Context) -> None:
    data = event.payload
    await _edge(ctx, data.follower_id, data.followee_id, True, int(event.occurred_at.timestamp() * 1000))


@consumer.on(topics.USER_UNFOLLOWED)
async def on_unfollowed(event: UserUnfollowed, ctx: Context) -> None:
    data = event.payload
    await _edge(ctx, data.follower_id, data.followee_id, False, int(event.occurred_at.timestamp() * 1000))
