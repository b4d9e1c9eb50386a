"""The app's PostgreSQL pool: a released connection costs no reset round trip, and no open transaction survives it."""

from __future__ import annotations

from chirp.settings import Settings
from store.postgres import connect


async def test_release_keeps_the_session_but_rolls_back_an_open_transaction(settings: Settings) -> None:
    pool = await connect(settings, migrate=False, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            await conn.execute("SELECT set_config('chirp.probe', 'kept', false)")
            pid = await conn.fetchval("SELECT pg_backend_pid()")
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT pg_backend_pid()") == pid
            # No RESET ALL ran between the two uses (the default reset would have cleared it).
            assert await conn.fetchval("SELECT current_setting('chirp.probe', true)") == "kept"
            await conn.execute("BEGIN")
            await conn.execute("CREATE TEMP TABLE pool_probe (x int)")
        async with pool.acquire() as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT to_regclass('pg_temp.pool_probe')") is None
    finally:
        await pool.close()
