"""Shared fixtures: settings pointing at the test database, and helpers to wait with a deadline."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import pytest

from chirp.settings import Settings

T = TypeVar("T")

os.environ["CHIRP_ENV"] = "dev"  # the dev login is how API tests log in (a test checks it is off otherwise)
os.environ["CHIRP_POSTGRES_DB"] = os.environ.get("CHIRP_POSTGRES_TEST_DB", "chirp_test")
os.environ.setdefault("CHIRP_REDIS_DB", "1")  # the app's keys live in database 0
os.environ.setdefault("CHIRP_CONSUMER_GROUP_PREFIX", "test-")  # the app's consumer groups are not the tests'
# The tests' topics and post channels (read when schemas.topics is imported: nothing above imports it).
os.environ.setdefault("CHIRP_TOPIC_NAMESPACE", "test-")
# Every run recreates the test database (and so the erasure key store) while the test topics keep earlier runs'
# sealed events: read those as erased instead of waiting for a key store that was thrown away on purpose.
os.environ.setdefault("CHIRP_ERASURE_LOST_KEYS", "skip")


# A replay swaps a Redis model in with one script over all its keys, which a Redis Cluster cannot run (replay refuses
# there: docs/scaling.md), so tests that replay a Redis model run on a single Redis only.
replays_redis = pytest.mark.skipif(
    Settings().redis_cluster, reason="replaying a Redis read model needs a single Redis (docs/scaling.md)"
)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session", autouse=True)
def fresh_services(request: pytest.FixtureRequest) -> Iterator[None]:
    """A run that uses the services starts from empty test stores and deletes its scratch topics at the end."""
    if all("unit" in item.path.parts for item in request.session.items):
        yield
        return
    from tests.session_state import remove_created, start_fresh

    settings = Settings()  # not the fixture: some modules override it
    before = asyncio.run(start_fresh(settings))
    yield
    asyncio.run(remove_created(settings, before))


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
