"""Fixtures of the fault tests: a stack of their own (tests/faults/stack.py), its clients and a small world in it."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
import redis.asyncio as aioredis

from producers.broker import Publisher, make_broker
from tests.faults.stack import FaultStack


@pytest.fixture(scope="module")
def stack() -> Iterator[FaultStack]:
    """The stack, torn down at the end of the module even when its start or a test failed."""
    if os.geteuid() != 0 and not shutil.which("sudo"):
        pytest.skip("mounting the small disk and running PostgreSQL's tools need root or sudo")
    started = FaultStack.create()
    try:
        started.start()
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
async def stack_pg(stack: FaultStack) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the stack's app database (the consumers apply the migrations)."""
    pool = await asyncpg.create_pool(stack.settings.postgres_dsn(), min_size=1, max_size=2)
    yield pool
    await pool.close()


@pytest.fixture(scope="module")
async def stack_redis(stack: FaultStack) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(stack.settings.redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture(scope="module")
async def stack_publisher(stack: FaultStack) -> AsyncIterator[Publisher]:
    broker = make_broker(stack.settings)
    await broker.connect()
    yield Publisher(broker)
    await broker.stop()
