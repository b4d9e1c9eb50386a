"""Fixtures of the cluster tests: a three-broker Kafka cluster of their own for the session (tests/cluster/stack.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from chirp.settings import Settings
from producers.broker import ensure_topics
from store.postgres import connect
from tests.cluster.stack import Cluster


@pytest.fixture(scope="session")
def cluster(settings: Settings) -> Iterator[Cluster]:
    started = Cluster.create(settings)
    try:
        started.up()
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="session")
async def cluster_topics(cluster: Cluster) -> Cluster:
    """The app's topics created on the cluster (replicated 3 times, min.insync.replicas=2)."""
    await ensure_topics(cluster.settings)
    return cluster


@pytest.fixture(scope="session")
async def pg(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await connect(settings, max_size=4)
    yield pool
    await pool.close()
