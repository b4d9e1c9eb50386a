"""Mention notifications: for each user, the posts that mention them, newest first.

In: post-parsed (its `mentions`: lower-cased handles), post-deleted.
Out: Redis, all under `notifications:` — `notifications:user:<user_id>` a sorted set of post ids scored by the
post's creation time (capped at `KEEP` per user), `notifications:post:<post_id>` a hash (author, text, time, who
was notified), `notifications:deleted:<post_id>` a tombstone.
Handles resolve through the `users` table (handle -> user_id, case-insensitive); a handle nobody has is skipped.
Idempotency: sorted-set members are post ids with a fixed score and the hash is rewritten with the same fields,
so an event applied twice changes nothing; a tombstone makes a post-parsed arriving after its post-deleted a no-op.
"""

from __future__ import annotations

from consumers.runtime import Consumer, Context
from schemas import topics
from schemas.events import PostDeleted, PostParsed

# The read model, for `chirp replay mentions`: Redis keys under this prefix, rebuilt after `users`.
consumer = Consumer(
    "mentions",
    "Per-user notification lists in Redis: the posts that mention each user.",
    redis_prefixes=("notifications:",),
    after=("users",),
)
KEEP = 500  # notifications kept per user


def user_key(user_id: str) -> str:
    return f"notifications:user:{user_id}"


def post_key(post_id: str) -> str:
    return f"notifications:post:{post_id}"


def tombstone_key(post_id: str) -> str:
    return f"notifications:deleted:{post_id}"


def recipients(event: PostParsed, user_ids: dict[str, str]) -> list[str]:
    """The users a post notifies: its mentions that resolve to a user, the author excluded, each once."""
    found = (user_ids.get(handle.lower()) for handle in event.payload.mentions)
    return sorted({uid for uid in found if uid and uid != event.payload.author_id})


async def _resolve(ctx: Context, handles: set[str]) -> dict[str, str]:
    rows = await ctx.pg.fetch(
        "SELECT lower(handle) AS handle, user_id FROM users WHERE lower(handle) = ANY($1::text[])", sorted(handles)
    )
    return {r["handle"]: r["user_id"] for r in rows}


@consumer.on(topics.POST_PARSED, batch=True)
async def on_post_parsed(events: list[PostParsed], ctx: Context) -> None:
    mentioning = [e for e in events if e.payload.mentions]
    if not mentioning:
        return
    user_ids = await _resolve(ctx, {h.lower() for e in mentioning for h in e.payload.mentions})
    deleted = await ctx.redis.mget([tombstone_key(e.payload.post_id) for e in mentioning])
    async with ctx.redis.pipeline(transaction=False) as pipe:
        for event, gone in zip(mentioning, deleted, strict=True):
            notified = recipients(event, user_ids)
            if gone or not notified:
                continue
            data = event.payload
            score = int(data.created_at.timestamp() * 1000)
            fields: list[str | int] = ["author_id", data.author_id, "text", data.text, "at", score]
            fields += ["users", ",".join(notified)]
            pipe.hset(post_key(data.post_id), items=fields)
            for user_id in notified:
                pipe.zadd(user_key(user_id), {data.post_id: score})
                pipe.zremrangebyrank(user_key(user_id), 0, -KEEP - 1)
        await pipe.execute()


@consumer.on(topics.POST_DELETED, batch=True)
async def on_post_deleted(events: list[PostDeleted], ctx: Context) -> None:
    post_ids = [e.payload.post_id for e in events]
    async with ctx.redis.pipeline(transaction=False) as pipe:
        for post_id in post_ids:
            pipe.set(tombstone_key(post_id), "1")
            pipe.hget(post_key(post_id), "users")
        notified = (await pipe.execute())[1::2]
    async with ctx.redis.pipeline(transaction=False) as pipe:
        for post_id, users in zip(post_ids, notified, strict=True):
            for user_id in (users or "").split(","):
                if user_id:
                    pipe.zrem(user_key(user_id), post_id)
            pipe.delete(post_key(post_id))
        await pipe.execute()
