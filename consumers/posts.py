"""The posts read model (PostgreSQL `posts`) and the live-update notices.

In: post-parsed, post-deleted.  Out: rows in `posts` through the `PostReadModel` port; per newly visible post a
notice on Redis pub/sub `chirp:posts` (`{"id","author_id","reply_to","hashtags"}`) and a marker on
`chirp:posts:projected:{id}` (and `chirp:posts:deleted:{id}` per delete) that a gateway request waiting for its
own write pops (`Prefer: wait`).
Idempotency: one upsert per batch keyed by post id; a delete leaves a tombstone that a later post-parsed never
revives; notices go out only for rows a write made visible for the first time, so replays stay quiet.
"""

from __future__ import annotations

import orjson

from consumers.runtime import Consumer, Context
from schemas import topics
from schemas.events import PostDeleted, PostParsed
from store.posts import CHANNEL, MARKER_TTL_S, PostgresPosts, Projected, deleted_key, projected_key

consumer = Consumer("posts", "Projects posts into PostgreSQL and announces new ones on Redis pub/sub.")


def notice(post: Projected) -> bytes:
    """The live-update notice for one post."""
    return orjson.dumps(
        {"id": post.id, "author_id": post.author_id, "reply_to": post.reply_to, "hashtags": post.hashtags}
    )


async def _mark(ctx: Context, keys: list[str], notices: list[bytes]) -> None:
    if not keys:
        return
    async with ctx.redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.rpush(key, 1)
            pipe.expire(key, MARKER_TTL_S)
        for message in notices:
            pipe.publish(CHANNEL, message)
        await pipe.execute()


@consumer.on(topics.POST_PARSED, batch=True)
async def on_post_parsed(events: list[PostParsed], ctx: Context) -> None:
    """Upsert the batch in one statement, then announce the posts that became visible."""
    visible = await PostgresPosts(ctx.pg).save_parsed(events)
    await _mark(ctx, [projected_key(p.id) for p in visible], [notice(p) for p in visible])


@consumer.on(topics.POST_DELETED, batch=True)
async def on_post_deleted(events: list[PostDeleted], ctx: Context) -> None:
    """Tombstone the batch in one statement; wake requests waiting for these deletes."""
    await PostgresPosts(ctx.pg).save_deleted(events)
    await _mark(ctx, [deleted_key(e.payload.post_id) for e in events], [])
