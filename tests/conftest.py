"""Shared fixtures: settings pointing at the test database, and helpers to wait with a deadline."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
import pytest
import redis.asyncio as aioredis

from chirp.ops import _kafka
from chirp.settings import Settings
from consumers.runtime import all_consumers
from producers.broker import ensure_topics

T = TypeVar("T")

os.environ["CHIRP_ENV"] = "dev"  # the dev login is how API tests log in (a test checks it is off otherwise)
os.environ["CHIRP_POSTGRES_DB"] = os.environ.get("CHIRP_POSTGRES_TEST_DB", "chirp_test")
os.environ.setdefault("CHIRP_REDIS_DB", "1")  # the app's keys live in database 0
os.environ.setdefault("CHIRP_CONSUMER_GROUP_PREFIX", "test-")  # a running app keeps its groups (and its events)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session", autouse=True)
def fresh_test_database(request: pytest.FixtureRequest) -> None:
    """Start every run that uses the services from an empty test database and Redis database, and the consumers'
    test groups at the end of their topics (the read models start empty: they follow what this run publishes).

    What earlier runs left there (or a crash did to it), and what the app published meanwhile, cannot decide this
    run's results. Migrations apply on the first connect.
    """
    if all("unit" in item.path.parts for item in request.session.items):
        return
    settings = Settings()  # not the fixture: some modules override it

    async def recreate() -> None:
        conn = await asyncpg.connect(settings.postgres_dsn("postgres"))
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{settings.postgres_db}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{settings.postgres_db}" OWNER "{settings.postgres_user}"')
        finally:
            await conn.close()
        async with aioredis.Redis.from_url(settings.redis_url) as client:
            await client.flushdb()
        await ensure_topics(settings)
        for consumer in all_consumers():
            async with _kafka.reader(settings, group_id=settings.group(consumer.name)) as kafka:
                if tps := await _kafka.partitions(kafka, consumer.handlers):
                    kafka.assign(tps)
                    await kafka.commit(await kafka.end_offsets(tps))

    asyncio.run(recreate())


async def eventually(
    probe: Callable[[], Awaitable[T]], *, until: Callable[[T], bool] = bool, timeout: float = 30.0
) -> T:
    """Poll `probe` until `until(result)` holds; fail with the last result after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = await probe()
        if until(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s; last value: {result!r}")
        await asyncio.sleep(0.05)
