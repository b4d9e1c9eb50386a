"""PostgreSQL connection pool and schema migrations (plain SQL files applied once, in order)."""

from __future__ import annotations

from importlib import resources
from typing import Any

import asyncpg
import orjson

from chirp.settings import Settings

MIGRATIONS = resources.files("store") / "migrations"
_LOCK = 727_001  # advisory lock id: one migrator at a time


async def _init(conn: asyncpg.Connection) -> None:
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(
            typ, encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads, schema="pg_catalog"
        )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release a connection as it is. asyncpg rolls back an open transaction first; its default reset would add a
    round trip per query (RESET ALL, UNLISTEN, CLOSE ALL, advisory unlock) for state this code never leaves behind:
    it sets settings with SET LOCAL and takes transaction-scoped advisory locks only."""


async def connect(
    settings: Settings,
    *,
    migrate: bool = True,
    min_size: int = 1,
    max_size: int = 10,
    server_settings: dict[str, str] | None = None,
    **pool_options: Any,
) -> asyncpg.Pool:
    """A pool on the app database, with migrations applied; `server_settings` are set on each connection."""
    pool = await asyncpg.create_pool(
        settings.postgres_dsn(),
        min_size=min_size,
        max_size=max_size,
        init=_init,
        reset=_keep_session,
        server_settings=server_settings,
        **pool_options,  # e.g. the gateway's connect and command timeouts
    )
    if migrate:
        await apply_migrations(pool)
    return pool


async def apply_migrations(pool: asyncpg.Pool) -> list[str]:
    """Apply the `store/migrations/*.sql` files not applied yet; returns their names."""
    applied: list[str] = []
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, applied_at timestamptz DEFAULT now())"
        )
        done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
        for path in sorted(MIGRATIONS.iterdir(), key=lambda p: p.name):
            if path.name.endswith(".sql") and path.name not in done:
                await conn.execute(path.read_text())
                await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", path.name)
                applied.append(path.name)
    return applied
