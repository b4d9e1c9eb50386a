"""Relations: who mutes and who blocks whom, and from that whose posts each user does not see.

In: user-mutes, user-blocks (each carries both directions, e.g. user-muted / user-unmuted).
Out: Redis under `chirp:rel:` (store/relations.py): per user the pair states, the lists of muted and blocked users,
and the set of users hidden from them, which every read path filters by.
Idempotency: each (user, kind, target) is last-writer-wins by occurred_at and the hidden sets are recomputed from
the lists, so duplicates and out-of-order events leave the same state.
"""

from __future__ import annotations

from consumers.runtime import Consumer, Context
from schemas import topics
from schemas.events import UserBlock, UserMute
from store.relations import PREFIX, Change, Kind

consumer = Consumer(
    "relations",
    "Mutes and blocks, and the users each user does not see, in Redis.",
    redis_prefixes=(PREFIX,),
)
ACTIVE = frozenset({"user-muted", "user-blocked"})  # the other types undo one of these


def change(event: UserMute | UserBlock, kind: Kind) -> Change:
    """The (user, kind, target) state after the event."""
    data = event.payload
    return Change(data.user_id, kind, data.target_id, event.type in ACTIVE, event.occurred_at)


@consumer.on(topics.USER_MUTES, batch=True)
async def on_mutes(events: list[UserMute], ctx: Context) -> None:
    await ctx.relations.apply([change(e, "mute") for e in events])


@consumer.on(topics.USER_BLOCKS, batch=True)
async def on_blocks(events: list[UserBlock], ctx: Context) -> None:
    await ctx.relations.apply([change(e, "block") for e in events])
