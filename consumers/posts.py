"""The posts read model (`posts` and `post_versions`, in PostgreSQL or ArangoDB: `CHIRP_STORE`) and its
announcements.

In: post-parsed, post-deleted.  Out: rows in `posts` and every version in `post_versions` (a post-parsed of an
edit carries `edited_at`; the newest version is the one shown) through the `PostReadModel` port; on Redis
pub/sub, a notice per newly visible post on `chirp:posts` (`{"id","author_id","reply_to","hashtags"}`, the web
UI's live updates), `{"id"}` per removed post on `chirp:posts:deleted` and per edited post on
`chirp:posts:edited` (gateway requests waiting for their own write listen to them).
Idempotency: one upsert per batch keyed by post id; a delete leaves a tombstone that a later post-parsed never
revives; announcements go out only for rows a write changed for the first time, so replays stay quiet.
"""

from __future__ import annotations

import orjson

from consumers.runtime import Consumer, Context
from schemas import topics
from schemas.events import PostDeleted, PostParsed
from store.posts import CHANNEL, DELETED_CHANNEL, EDITED_CHANNEL, Projected

consumer = Consumer(
    "posts",
    "Projects posts into PostgreSQL and announces new ones on Redis pub/sub.",
    tables=("posts", "post_versions"),
    reader_indexes=("posts_live", "posts_by_author", "posts_replies"),
)


def notice(post: Projected) -> bytes:
    """The live-update notice for one post."""
    return orjson.dumps(
        {"id": post.id, "author_id": post.author_id, "reply_to": post.reply_to, "hashtags": post.hashtags}
    )


async def _announce(ctx: Context, channel: str, messages: list[bytes]) -> None:
    if messages:
        async with ctx.redis.pipeline(transaction=False) as pipe:
            for message in messages:
                pipe.publish(channel, message)
            await pipe.execute()


@consumer.on(topics.POST_PARSED, batch=True)
async def on_post_parsed(events: list[PostParsed], ctx: Context) -> None:
    """Upsert the batch in one statement, then announce the posts that became visible (unless nobody would
    receive it: a replay's shadow copy announces nothing)."""
    visible = await ctx.posts.save_parsed(events)
    if ctx.announcing:
        await _announce(ctx, CHANNEL, [notice(p) for p in visible])
        edited = {e.payload.post_id for e in events if e.payload.edited_at}
        await _announce(ctx, EDITED_CHANNEL, [orjson.dumps({"id": post_id}) for post_id in sorted(edited)])


@consumer.on(topics.POST_DELETED, batch=True)
async def on_post_deleted(events: list[PostDeleted], ctx: Context) -> None:
    """Tombstone the batch in one statement, then announce the posts that left the read model."""
    removed = await ctx.posts.save_deleted(events)
    if ctx.announcing:
        await _announce(ctx, DELETED_CHANNEL, [orjson.dumps({"id": post_id}) for post_id in removed])
