"""Logins and held-back handles in PostgreSQL: which opaque user id each login (GitHub id, dev login) maps to
(`login_accounts`), and the digests of the handles of deleted accounts with when they may be taken again
(`handle_quarantine`). Not read models: the gateway writes them, a replay does not rebuild them (docs/erasure.md).
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Protocol

import asyncpg

from schemas.events import new_id

_USER_ID_FOR = """
WITH made AS (
    INSERT INTO login_accounts (login_kind, login_id, user_id) VALUES ($1, $2, $3)
    ON CONFLICT (login_kind, login_id) DO NOTHING RETURNING user_id)
SELECT user_id FROM made
UNION ALL SELECT user_id FROM login_accounts WHERE login_kind = $1 AND login_id = $2
LIMIT 1"""


def handle_digest(handle: str) -> str:
    """What is kept of a deleted account's handle: its lower-cased SHA-256."""
    return hashlib.sha256(handle.lower().encode()).hexdigest()


class Accounts(Protocol):
    """Logins and quarantined handles, as the gateway's login and account deletion use them."""

    async def quarantined(self, handle: str) -> bool: ...
    async def user_id_for(self, kind: str, login_id: str) -> str: ...
    async def forget(self, user_id: str, handle: str, until: datetime) -> None: ...


class PostgresAccounts:
    """`Accounts` on the `login_accounts` and `handle_quarantine` tables."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def quarantined(self, handle: str) -> bool:
        """Whether `handle` belonged to an account deleted less than `handle_quarantine_days` ago."""
        return bool(
            await self.pool.fetchval(
                "SELECT 1 FROM handle_quarantine WHERE handle_sha256 = $1 AND until > now()", handle_digest(handle)
            )
        )

    async def user_id_for(self, kind: str, login_id: str) -> str:
        """The opaque user id of a login (`github`: the GitHub id; `dev`: the lower-cased dev login), made on first
        use. Ids reveal nothing about the person; the mapping is deleted with the account."""
        return str(await self.pool.fetchval(_USER_ID_FOR, kind, login_id, new_id()))

    async def forget(self, user_id: str, handle: str, until: datetime) -> None:
        """Hold `handle` back until `until` and delete the user's logins, in one transaction."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO handle_quarantine (handle_sha256, until) VALUES ($1, $2)"
                " ON CONFLICT (handle_sha256) DO UPDATE SET until = EXCLUDED.until",
                handle_digest(handle),
                until,
            )
            await conn.execute("DELETE FROM login_accounts WHERE user_id = $1", user_id)
