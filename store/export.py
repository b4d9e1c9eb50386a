"""A user's own rows for `GET /api/me/export`, read from the PostgreSQL read models: the profile, which posts quote
which, and the likes, reposts, bookmarks and follows both ways, a page of rows at a time (the posts themselves come
from the posts read model, on whichever store holds it)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

import asyncpg

EXPORT_PAGE = 500  # rows fetched per round trip while exporting

_SECTIONS: tuple[tuple[str, str], ...] = (
    *(
        (
            name,
            "SELECT post_id, changed_at AS at FROM interactions"
            f" WHERE user_id = $1 AND kind = '{kind}' AND active ORDER BY changed_at",
        )
        for name, kind in (("likes", "like"), ("reposts", "repost"), ("bookmarks", "bookmark"))
    ),
    (
        "following",
        "SELECT f.followee_id AS user_id, u.handle, f.changed_at AS since FROM follows f"
        " LEFT JOIN users u ON u.user_id = f.followee_id WHERE f.follower_id = $1 AND f.active ORDER BY f.changed_at",
    ),
    (
        "followers",
        "SELECT f.follower_id AS user_id, u.handle, f.changed_at AS since FROM follows f"
        " LEFT JOIN users u ON u.user_id = f.follower_id WHERE f.followee_id = $1 AND f.active ORDER BY f.changed_at",
    ),
)


class AccountExport(Protocol):
    """What an export reads besides the posts."""

    async def profile(self, user_id: str) -> dict[str, Any] | None: ...
    async def quotes_of(self, post_ids: Sequence[str]) -> dict[str, str]: ...
    def sections(self, user_id: str) -> AsyncIterator[tuple[str, AsyncIterator[list[dict[str, Any]]]]]: ...


class PostgresAccountExport:
    """`AccountExport` on the users, follows, interactions and quotes tables."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def profile(self, user_id: str) -> dict[str, Any] | None:
        """The user's profile row."""
        row = await self.pool.fetchrow(
            "SELECT user_id, handle, display_name, bio, avatar_url, joined_at FROM users WHERE user_id = $1", user_id
        )
        return dict(row) if row else None

    async def quotes_of(self, post_ids: Sequence[str]) -> dict[str, str]:
        """post id -> the id of the post it quotes, for those of `post_ids` that quote one."""
        quoted = await self.pool.fetch("SELECT post_id, quote_of FROM quotes WHERE post_id = ANY($1::text[])", post_ids)
        return {r["post_id"]: r["quote_of"] for r in quoted}

    async def sections(self, user_id: str) -> AsyncIterator[tuple[str, AsyncIterator[list[dict[str, Any]]]]]:
        """(name, its pages of rows) per section, oldest first, all from one snapshot; read each section's pages
        before asking for the next section."""
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            for name, sql in _SECTIONS:
                yield name, _pages(conn, sql, user_id)


async def _pages(conn: asyncpg.Connection, sql: str, user_id: str) -> AsyncIterator[list[dict[str, Any]]]:
    cursor = await conn.cursor(sql, user_id)
    while rows := await cursor.fetch(EXPORT_PAGE):
        yield [dict(r) for r in rows]
