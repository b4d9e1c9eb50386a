"""Integration fixtures: the gateway in-process on the real services, and every consumer in a child process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis
from starlette.applications import Starlette

from chirp.redis_client import connect as redis_client_for
from chirp.settings import Settings
from gateway.app import create_app
from producers.broker import Publisher, make_broker
from store.postgres import connect
from tests.integration.helpers import stop
from tests.scratch import scratch_id


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[Starlette]:
    """The gateway app with its lifespan entered (broker, Redis and PostgreSQL connected)."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: Starlette, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the in-process gateway as a browser on the public origin would."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=settings.public_url) as http:
        yield http


@pytest.fixture(scope="module")
async def publisher(settings: Settings) -> AsyncIterator[Publisher]:
    """Publishes events to the real broker, as the gateway does."""
    broker = make_broker(settings)
    await broker.connect()
    yield Publisher(broker)
    await broker.stop()


@pytest.fixture(scope="module")
async def pg(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    """The pool consumers get (JSON codecs, migrations applied), on the test database."""
    pool = await connect(settings, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture(scope="module")
async def redis_client(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    client = redis_client_for(settings, decode_responses=True)  # a cluster client when the run is on one
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def pipeline(settings: Settings) -> Iterator[subprocess.Popen[bytes]]:
    """Every consumer running in one child process (as `make run` does), stopped with SIGTERM at the end."""
    cmd = [sys.executable, "-m", "ops", "consume", "--all", "--metrics-port", "0"]
    proc = subprocess.Popen(cmd, env={**os.environ})
    yield proc
    stop(proc)


ERASURE_DELAY_S = 2.0  # the erasure delay of the `fast_erasure` consumer


@pytest.fixture(scope="module")
def fast_erasure(settings: Settings) -> Iterator[str]:
    """An erasure consumer (a group of its own, yielded) whose erasures are due `ERASURE_DELAY_S` after they are
    asked for: the soonest due time counts, so it decides for the pipeline's erasure consumer too."""
    group = scratch_id()
    env = {**os.environ, "CHIRP_ERASURE_DELAY_S": str(ERASURE_DELAY_S), "CHIRP_ERASURE_POLL_S": "0.2"}
    cmd = [sys.executable, "-m", "ops", "consume", "erasure", "--group", group, "--metrics-port", "0"]
    proc = subprocess.Popen(cmd, env=env)
    yield group
    stop(proc, timeout=30)
