"""The erasure schedule (`erasures`, migration 090) and what an account deletion must undo, read from the models.

Written by the erasure consumer only; `chirp erasure status` reads it. It is not rebuilt by a replay: the events
that scheduled a completed erasure are themselves erased, so the table is the record that the erasure happened.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from store.posts import PostReadModel


@dataclass(frozen=True, slots=True)
class Footprint:
    """What a user still has in the read models when their account is deleted."""

    posts: list[str]
    following: list[str]
    followers: list[str]
    interactions: list[tuple[str, str]]  # (post id, kind)


async def schedule(pool: asyncpg.Pool, targets: Sequence[tuple[str, datetime]], delay_s: float) -> None:
    """Schedule the erasure of each (key id, requested at), due `delay_s` later; of repeats the soonest counts."""
    soonest: dict[str, datetime] = {}
    for target, at in targets:  # one row per target in a statement
        soonest[target] = min(at, soonest.get(target, at))
    if soonest:
        await pool.execute(
            """INSERT INTO erasures (target, requested_at, due_at)
               SELECT t, r, r + $3::interval FROM unnest($1::text[], $2::timestamptz[]) AS x(t, r)
               ON CONFLICT (target) DO UPDATE SET due_at = least(erasures.due_at, EXCLUDED.due_at)
               WHERE erasures.done_at IS NULL""",
            list(soonest),
            list(soonest.values()),
            timedelta(seconds=delay_s),
        )


async def footprint(pool: asyncpg.Pool, posts: PostReadModel, user_id: str) -> Footprint:
    """The user's live posts, active follows both ways and active interactions, from their read models."""
    own = await posts.ids_by_author(user_id)
    following = await pool.fetch("SELECT followee_id FROM follows WHERE follower_id = $1 AND active", user_id)
    followers = await pool.fetch("SELECT follower_id FROM follows WHERE followee_id = $1 AND active", user_id)
    acts = await pool.fetch("SELECT post_id, kind FROM interactions WHERE user_id = $1 AND active", user_id)
    return Footprint(own, [r[0] for r in following], [r[0] for r in followers], [(r[0], r[1]) for r in acts])


async def due(pool: asyncpg.Pool, limit: int = 100) -> list[str]:
    """Targets whose erasure is due and not done, oldest first."""
    rows = await pool.fetch(
        "SELECT target FROM erasures WHERE done_at IS NULL AND due_at <= now() ORDER BY due_at LIMIT $1", limit
    )
    return [r[0] for r in rows]


async def run(pool: asyncpg.Pool, target: str, erase: Callable[[str], Awaitable[int]]) -> bool:
    """Erase `target` once: the row is locked while its keys go, so two erasure processes never both do it.
    Returns whether this call did it."""
    async with pool.acquire() as conn, conn.transaction():
        claimed = await conn.fetchval(
            "SELECT 1 FROM erasures WHERE target = $1 AND done_at IS NULL FOR UPDATE SKIP LOCKED", target
        )
        if not claimed:
            return False
        count = await erase(target)
        await conn.execute("UPDATE erasures SET done_at = now(), keys_erased = $2 WHERE target = $1", target, count)
        return True


async def status(pool: asyncpg.Pool) -> list[dict[str, object]]:
    """Every erasure, pending first, each group by due time, with the seconds left until due."""
    rows = await pool.fetch(
        """SELECT target, requested_at, due_at, done_at, keys_erased,
                  greatest(0, extract(epoch FROM due_at - now()))::float AS seconds_left
           FROM erasures ORDER BY done_at IS NOT NULL, due_at"""
    )
    return [dict(r) for r in rows]
