"""Users read model in PostgreSQL: profiles (per-field last-writer-wins), follows and their exact counts.

Writes come from the users consumer only; reads from the gateway. Counts move in the transaction that changed the
follows, by what it changed (a pair turning active or inactive, never an event older than the pair's state), so
duplicates, replays and out-of-order events cannot drift them; a new row counts the follows made before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import asyncpg

from schemas.events import (
    UserProfileSynced,
    UserProfileUpdated,
    UserProfileUpdatedData,
    UserRegistered,
    UserRegisteredData,
)
from store.posts import PostReadModel

ProfileEvent = UserRegistered | UserProfileSynced | UserProfileUpdated
PLACEHOLDER = "~"  # prefix of the handle of a user whose handle is unknown (never matches a valid handle)


@dataclass(frozen=True, slots=True)
class ProfileChange:
    """What one profile event says about a user; None means the event does not carry that field."""

    user_id: str
    at: datetime
    handle: str | None = None
    display_name: str | None = None
    bio: str | None = None
    avatar_url: str | None = None
    github_id: int | None = None
    registered: bool = False
    name_chosen: bool = False  # the display name is one the user picked, not GitHub's (migration 040)

    @classmethod
    def of(cls, event: ProfileEvent) -> ProfileChange:
        """The fields one profile event sets, stamped with its occurred_at."""
        data = event.payload
        if isinstance(data, UserProfileUpdatedData):
            name = data.display_name
            return cls(data.user_id, event.occurred_at, display_name=name, bio=data.bio, name_chosen=name is not None)
        return cls(
            data.user_id,
            event.occurred_at,
            handle=data.handle,
            display_name=data.display_name,
            avatar_url=data.avatar_url,
            github_id=data.github_id if isinstance(data, UserRegisteredData) else None,
            registered=isinstance(data, UserRegisteredData),
        )


@dataclass(frozen=True, slots=True)
class FollowChange:
    """The state of one (follower, followee) pair after an event at `at`."""

    follower_id: str
    followee_id: str
    active: bool
    at: datetime


@dataclass(frozen=True, slots=True)
class FollowPage:
    rows: list[dict[str, Any]]
    after: tuple[datetime, str] | None  # keyset of the last row when there may be more


def placeholder_handle(user_id: str) -> str:
    return PLACEHOLDER + user_id


_HOLDER = """
SELECT user_id, handle_at FROM users WHERE lower(handle) = lower($1) AND user_id <> $2 FOR UPDATE"""

_RELEASE = "UPDATE users SET handle = '~' || user_id WHERE user_id = $1"


def _field(name: str, stamp: str) -> str:
    """Set column `name` from the event only when the event is newer than what set it last (column `stamp`)."""
    return (
        f"{name} = CASE WHEN EXCLUDED.{stamp} > coalesce(u.{stamp}, '-infinity') THEN EXCLUDED.{name} "
        f"ELSE u.{name} END, {stamp} = greatest(u.{stamp}, EXCLUDED.{stamp})"
    )


def chosen_name_wins(row: str) -> str:
    """SET clauses of an upsert (target aliased `row`) for the display name: a name the user chose outranks
    GitHub's, then the newest wins, then (same instant) the greater name, so arrival order never matters."""
    wins = (
        "(EXCLUDED.display_name_chosen, EXCLUDED.display_name_at, EXCLUDED.display_name)"
        f" > ({row}.display_name_chosen, coalesce({row}.display_name_at, '-infinity'), {row}.display_name)"
    )
    return (
        f"display_name = CASE WHEN {wins} THEN EXCLUDED.display_name ELSE {row}.display_name END, "
        f"display_name_at = CASE WHEN {wins} THEN EXCLUDED.display_name_at ELSE {row}.display_name_at END, "
        f"display_name_chosen = {row}.display_name_chosen OR EXCLUDED.display_name_chosen"
    )


_UPSERT = f"""
INSERT INTO users AS u (user_id, github_id, handle, handle_at, display_name, display_name_at, display_name_chosen,
                        bio, bio_at, avatar_url, avatar_at, registered_at, joined_at, profile_at, followers_count,
                        following_count)
VALUES ($1, $2, coalesce($3, '~' || $1), $4, coalesce($5, ''), $6, $13, coalesce($7, ''), $8, coalesce($9, ''),
        $10, $11, $12, $12,
        (SELECT count(*) FROM follows WHERE followee_id = $1 AND active),
        (SELECT count(*) FROM follows WHERE follower_id = $1 AND active))
ON CONFLICT (user_id) DO UPDATE SET
    github_id = coalesce(EXCLUDED.github_id, u.github_id),
    {_field("handle", "handle_at")}, {chosen_name_wins("u")},
    {_field("bio", "bio_at")}, {_field("avatar_url", "avatar_at")},
    registered_at = least(u.registered_at, EXCLUDED.registered_at),
    joined_at = coalesce(least(u.registered_at, EXCLUDED.registered_at), u.joined_at),
    profile_at = greatest(u.profile_at, EXCLUDED.profile_at)"""

# Counts move by what each upsert changed: a pair turning active adds one on both sides, turning inactive takes
# one away; an event older than the pair's state changes no row, so it moves nothing (replays are harmless).
_APPLY_FOLLOWS = """
WITH incoming AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::boolean[], $4::timestamptz[])
        AS x(follower_id, followee_id, active, changed_at)
), before AS (
    SELECT f.follower_id, f.followee_id, f.active FROM follows f JOIN incoming i USING (follower_id, followee_id)
), changed AS (
    INSERT INTO follows AS f (follower_id, followee_id, active, changed_at) SELECT * FROM incoming
    ON CONFLICT (follower_id, followee_id) DO UPDATE SET active = EXCLUDED.active, changed_at = EXCLUDED.changed_at
    WHERE (EXCLUDED.changed_at, EXCLUDED.active) > (f.changed_at, f.active)
    RETURNING f.follower_id, f.followee_id, f.active
), moves AS (
    SELECT c.follower_id, c.followee_id, c.active::int - coalesce(b.active, false)::int AS delta
    FROM changed c LEFT JOIN before b USING (follower_id, followee_id)
), per_user AS (
    SELECT user_id, sum(followers) AS followers, sum(following) AS following FROM (
        SELECT followee_id AS user_id, delta AS followers, 0 AS following FROM moves WHERE delta <> 0
        UNION ALL
        SELECT follower_id, 0, delta FROM moves WHERE delta <> 0) m
    GROUP BY user_id
)
UPDATE users u SET followers_count = u.followers_count + p.followers, following_count = u.following_count + p.following
FROM per_user p WHERE u.user_id = p.user_id"""

# {posts_count}: counted here when the posts read model is in PostgreSQL too (`_COUNTED`), else 0 and asked of it.
_PROFILE = """
SELECT u.user_id, u.handle, u.display_name, u.bio, u.avatar_url, u.joined_at, u.followers_count, u.following_count,
       {posts_count} AS posts_count,
       coalesce((SELECT f.active FROM follows f WHERE f.follower_id = $2 AND f.followee_id = u.user_id), false)
           AS followed_by_me
FROM users u WHERE lower(u.handle) = lower($1)"""
_COUNTED = "(SELECT count(*) FROM posts p WHERE p.author_id = u.user_id AND p.deleted_at IS NULL)"


def _page_sql(side: str, other: str) -> str:
    """Followers (side=followee_id) or following (side=follower_id) of a user, newest follow first."""
    return f"""
SELECT f.changed_at, u.user_id, u.handle, u.display_name, u.avatar_url, u.followers_count
FROM follows f JOIN users u ON u.user_id = f.{other}
WHERE f.{side} = $1 AND f.active AND left(u.handle, 1) <> '~'
  AND ($2::timestamptz IS NULL OR (f.changed_at, f.{other}) < ($2::timestamptz, $3::text))
ORDER BY f.changed_at DESC, f.{other} DESC
LIMIT $4"""


_FOLLOWERS = _page_sql("followee_id", "follower_id")
_FOLLOWING = _page_sql("follower_id", "followee_id")


def newest_per_pair(changes: list[FollowChange]) -> list[FollowChange]:
    """The newest change of each pair (one upsert may not touch a row twice); self-follows dropped.

    At the very same instant a follow wins over an unfollow, so the outcome never depends on arrival order.
    """
    newest: dict[tuple[str, str], FollowChange] = {}
    for change in changes:
        if change.follower_id == change.followee_id:
            continue
        pair = (change.follower_id, change.followee_id)
        if pair not in newest or (change.at, change.active) > (newest[pair].at, newest[pair].active):
            newest[pair] = change
    return sorted(newest.values(), key=lambda c: (c.follower_id, c.followee_id))


class UsersReadModel(Protocol):
    """What the gateway reads about people."""

    async def profile(self, handle: str, viewer_id: str | None) -> dict[str, Any] | None: ...
    async def user_id(self, handle: str) -> str | None: ...
    async def followers(self, user_id: str, after: tuple[datetime, str] | None, limit: int) -> FollowPage: ...
    async def following(self, user_id: str, after: tuple[datetime, str] | None, limit: int) -> FollowPage: ...


class PostgresUsersReadModel:
    """The users read model on the `users` and `follows` tables."""

    def __init__(self, pool: asyncpg.Pool, posts_elsewhere: PostReadModel | None = None) -> None:
        self.pool = pool
        self._posts = posts_elsewhere  # the posts read model when it is not in this database (CHIRP_STORE)
        self._profile = _PROFILE.format(posts_count="0" if posts_elsewhere else _COUNTED)

    async def apply_profiles(self, changes: list[ProfileChange]) -> None:
        """Apply profile events in one transaction, last writer wins per field, handles kept unique."""
        async with self.pool.acquire() as conn, conn.transaction():
            # A new row counts the follows made before it: none may commit meanwhile, or no count would include it
            # (the follow's writer cannot see the row yet). Follow writers wait for this (see `apply_follows`). The
            # users lock comes first, so a replay's swap (which locks users, then follows) makes this wait holding
            # nothing.
            await conn.execute("LOCK TABLE users IN ROW EXCLUSIVE MODE")
            await conn.execute("LOCK TABLE follows IN SHARE MODE")
            for change in sorted(changes, key=lambda c: c.at):
                handle = await self._claim_handle(conn, change) if change.handle else None
                await conn.execute(
                    _UPSERT,
                    change.user_id,
                    change.github_id,
                    handle,
                    change.at if handle else None,
                    change.display_name,
                    change.at if change.display_name is not None else None,
                    change.bio,
                    change.at if change.bio is not None else None,
                    change.avatar_url,
                    change.at if change.avatar_url is not None else None,
                    change.at if change.registered else None,
                    change.at,
                    change.name_chosen,
                )

    async def _claim_handle(self, conn: asyncpg.Connection, change: ProfileChange) -> str:
        """The handle this change may set: the newer claim to a handle wins it, the older holder loses it."""
        assert change.handle
        holder = await conn.fetchrow(_HOLDER, change.handle, change.user_id)
        if holder is None:
            return change.handle
        if holder["handle_at"] is not None and holder["handle_at"] > change.at:
            # Someone claimed this handle after this event: the user has renamed since; we do not know to what.
            return placeholder_handle(change.user_id)
        await conn.execute(_RELEASE, holder["user_id"])
        return change.handle

    async def apply_follows(self, changes: list[FollowChange]) -> None:
        """Upsert the newest state of each pair and move both sides' counts by what changed, in one transaction."""
        newest = newest_per_pair(changes)
        if not newest:
            return
        touched = sorted({c.follower_id for c in newest} | {c.followee_id for c in newest})
        async with self.pool.acquire() as conn, conn.transaction():
            # Locks first, the table's before the rows' (as `apply_profiles` takes them, so neither waits for the
            # other while holding what it needs); rows in a fixed order: concurrent writers of the same users run one
            # after the other, so each one's statement sees the pairs as the previous one left them.
            await conn.execute("LOCK TABLE follows IN ROW EXCLUSIVE MODE")
            await conn.execute(
                "SELECT 1 FROM users WHERE user_id = ANY($1::text[]) ORDER BY user_id FOR UPDATE", touched
            )
            await conn.execute(
                _APPLY_FOLLOWS,
                [c.follower_id for c in newest],
                [c.followee_id for c in newest],
                [c.active for c in newest],
                [c.at for c in newest],
            )

    async def delete_users(self, user_ids: list[str]) -> None:
        """Remove deleted accounts' profiles and the follows left inactive by their unfollows."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM users WHERE user_id = ANY($1::text[])", user_ids)
            await conn.execute(
                "DELETE FROM follows WHERE NOT active AND (follower_id = ANY($1::text[]) OR followee_id = ANY($1))",
                user_ids,
            )

    async def profile(self, handle: str, viewer_id: str | None) -> dict[str, Any] | None:
        """The public profile of `handle` (case-insensitive) as seen by `viewer_id`."""
        row = await self.pool.fetchrow(self._profile, handle, viewer_id)
        if row is None:
            return None
        profile = dict(row)
        if self._posts is not None:
            profile["posts_count"] = await self._posts.count_by_author(profile["user_id"])
        return profile

    async def user_id(self, handle: str) -> str | None:
        """The id of the user holding `handle` (case-insensitive)."""
        return await self.pool.fetchval("SELECT user_id FROM users WHERE lower(handle) = lower($1)", handle)

    async def followers(self, user_id: str, after: tuple[datetime, str] | None, limit: int) -> FollowPage:
        """Who follows `user_id`, newest follow first."""
        return await self._page(_FOLLOWERS, user_id, after, limit)

    async def following(self, user_id: str, after: tuple[datetime, str] | None, limit: int) -> FollowPage:
        """Whom `user_id` follows, newest follow first."""
        return await self._page(_FOLLOWING, user_id, after, limit)

    async def _page(self, sql: str, user_id: str, after: tuple[datetime, str] | None, limit: int) -> FollowPage:
        at, other = after or (None, None)
        rows = [dict(r) for r in await self.pool.fetch(sql, user_id, at, other, limit + 1)]
        more = len(rows) > limit
        rows = rows[:limit]
        return FollowPage(rows, (rows[-1]["changed_at"], rows[-1]["user_id"]) if more else None)
