"""Erasure: account deletions through every read model, and the scheduled deletion of erasure keys.

In: account-deleted, post-deleted.
Out: for an account deletion, derived events undoing what the account did, so every consumer removes it by the
paths it already has: post-deleted for each live post, user-unfollowed for each follow both ways, and the undo of
each like, repost and bookmark (others' counts go down); and rows in `erasures` (store/erasure.py). Every
`erasure_poll_s` the due erasures delete their keys (store/keys.py): the user key and every post key the user owns,
or one post's key. From then on the events bound to those keys are unreadable in Kafka and skipped by every
consumer and replay (docs/erasure.md).
Idempotency: an erasure is scheduled once per target (the first request counts); the derived events are the state
after deletion (last writer wins downstream), so a redelivered account-deleted publishes the same undo again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from chirp.logging import get_logger
from chirp.outages import outage_reason
from consumers.runtime import Consumer, Context
from schemas import topics
from schemas.events import (
    AccountDeleted,
    Event,
    PostBookmark,
    PostDeleted,
    PostLike,
    PostRepost,
    UserBlock,
    UserMute,
    UserUnfollowed,
)
from schemas.personal import post_key, user_key
from store import erasure
from store.relations import Kind, list_key

log = get_logger("chirp.erasure")
consumer = Consumer(
    "erasure",
    "Takes deleted accounts out of every read model and deletes erasure keys when due.",
    after=("posts", "users", "interactions", "relations"),
)
_UNDO: dict[str, tuple[type[Event], str]] = {
    "like": (PostLike, "post-unliked"),
    "repost": (PostRepost, "post-unreposted"),
    "bookmark": (PostBookmark, "post-unbookmarked"),
}


async def undo_account(event: AccountDeleted, ctx: Context) -> list[Event]:
    """The events that take the account's posts, follows and interactions out of the read models."""
    user_id = event.payload.user_id
    found = await erasure.footprint(ctx.pg, ctx.posts, user_id)

    def derived(model: type[Event], kind: str, payload: dict[str, str]) -> Event:
        return model.model_validate(
            {
                "type": kind,
                "version": 1,
                "occurred_at": event.occurred_at,
                "correlation_id": event.correlation_id,
                "causation_id": event.id,
                "actor": user_id,
                "payload": payload,
            }
        )

    undo = [derived(PostDeleted, "post-deleted", {"post_id": p, "author_id": user_id}) for p in found.posts]
    undo += [
        derived(UserUnfollowed, "user-unfollowed", {"follower_id": user_id, "followee_id": other})
        for other in found.following
    ]
    undo += [
        derived(UserUnfollowed, "user-unfollowed", {"follower_id": other, "followee_id": user_id})
        for other in found.followers
    ]
    undo += [
        derived(_UNDO[kind][0], _UNDO[kind][1], {"user_id": user_id, "post_id": post_id})
        for post_id, kind in found.interactions
    ]
    return undo


# What an account deletion undoes, one step per kind of thing an account leaves in the read models (a new kind adds
# its step here, or its consumer handles account-deleted itself, as users, search, notifications and moderation do).
async def undo_relations(event: AccountDeleted, ctx: Context) -> list[Event]:
    """The unmute and unblock of everyone the account muted or blocked (the relations model's lists)."""
    user_id = event.payload.user_id
    undo: list[Event] = []
    kinds: tuple[tuple[Kind, type[Event], str], ...] = (
        ("mute", UserMute, "user-unmuted"),
        ("block", UserBlock, "user-unblocked"),
    )
    for kind, model, undone in kinds:
        for target in await ctx.redis.zrange(list_key(kind, user_id), 0, -1):
            undo.append(
                model.model_validate(
                    {
                        "type": undone,
                        "version": 1,
                        "occurred_at": event.occurred_at,
                        "correlation_id": event.correlation_id,
                        "causation_id": event.id,
                        "actor": user_id,
                        "payload": {"user_id": user_id, "target_id": str(target)},
                    }
                )
            )
    return undo


UNDO_STEPS: list[Callable[[AccountDeleted, Context], Awaitable[list[Event]]]] = [undo_account, undo_relations]


@consumer.on(topics.ACCOUNT_DELETED)
async def on_account_deleted(event: AccountDeleted, ctx: Context) -> None:
    for step in UNDO_STEPS:
        await ctx.publisher.publish_many(await step(event, ctx))
    await erasure.schedule(ctx.pg, [(user_key(event.payload.user_id), event.occurred_at)], ctx.settings.erasure_delay_s)


@consumer.on(topics.POST_DELETED, batch=True)
async def on_post_deleted(events: list[PostDeleted], ctx: Context) -> None:
    targets = [(post_key(e.payload.post_id), e.occurred_at) for e in events]
    await erasure.schedule(ctx.pg, targets, ctx.settings.erasure_delay_s)


async def erase_due(ctx: Context) -> list[str]:
    """Delete the keys of every erasure that is due; returns the targets erased."""
    erased = []
    for target in await erasure.due(ctx.pg):

        async def erase(target: str) -> int:
            count = await ctx.keys.erase(target, at=datetime.now(UTC))
            log.info("erased", target=target, keys=count)
            return count

        if await erasure.run(ctx.pg, target, erase):
            erased.append(target)
    return erased


async def _erase_forever(ctx: Context) -> None:
    while True:
        try:
            await erase_due(ctx)
        except Exception as exc:  # the next round tries again: an erasure stays pending until it is done
            log.warning("erasure round failed", error=repr(exc), outage=outage_reason(exc))
        await asyncio.sleep(ctx.settings.erasure_poll_s)


_tasks: set[asyncio.Task[None]] = set()


@consumer.on_setup
async def start_erasing(ctx: Context, me: Consumer) -> None:
    """Erase what is due every `erasure_poll_s` (the schedule is a table, so a restart loses nothing)."""
    task = asyncio.get_running_loop().create_task(_erase_forever(ctx))
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
