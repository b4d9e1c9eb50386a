"""`chirp gateway --workers 2`: two processes behind one port keep what users see whole, because every piece of
shared state lives in Redis, PostgreSQL or Kafka, never in a worker: a rate limit is one bucket whichever worker
answers, a post is readable right after a `Prefer: wait` post whichever worker reads it, and a live stream hears
posts accepted by either worker. Each request goes on a new connection, so the kernel spreads them over both."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest

from tests.cluster.stack import Cluster
from tests.conftest import eventually
from tests.integration.helpers import login, unique_handle

BURST = 6  # posts one user may make at once (refilled one per ~17 minutes: none come back during the test)


@pytest.fixture(scope="module")
def two_workers(cluster_topics: Cluster, tmp_path_factory: pytest.TempPathFactory) -> str:
    tmp = tmp_path_factory.mktemp("workers")
    cluster_topics.consume(["preparse", "posts"], tmp / "consumers.log")
    env = {
        "CHIRP_RATELIMIT_SCALE": "1",
        "CHIRP_RATELIMITS": orjson.dumps({"post": [0.001, BURST]}).decode(),
        "CHIRP_RATELIMITS_IP": orjson.dumps({"login": [10, 100]}).decode(),
    }
    url = cluster_topics.gateway(2, tmp / "gateway.log", env)
    gateway = cluster_topics.procs[-1]
    children = subprocess.run(["pgrep", "-P", str(gateway.pid)], capture_output=True, text=True).stdout.split()
    assert len(children) >= 2, f"expected two worker processes, found {children}"
    return url


@contextlib.asynccontextmanager
async def fresh_connections(url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client that opens a new connection for every request (no keep-alive)."""
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, timeout=20, limits=limits) as http:
        yield http


async def test_a_rate_limit_is_one_bucket_across_workers(two_workers: str) -> None:
    async with fresh_connections(two_workers) as http:
        headers = await login(http, unique_handle("rl"))
        statuses = [
            (await http.post("/api/posts", json={"body": f"limited {i}"}, headers=headers)).status_code
            for i in range(BURST * 2 + 2)
        ]
    assert statuses.count(202) == BURST, statuses
    assert statuses.count(429) == BURST + 2, statuses


async def test_a_post_is_readable_at_once_from_any_worker(two_workers: str) -> None:
    async with fresh_connections(two_workers) as http:
        headers = await login(http, unique_handle("ryw"))
        for i in range(BURST):
            wait = {**headers, "Prefer": "wait=10"}
            posted = await http.post("/api/posts", json={"body": f"read your writes {i}"}, headers=wait)
            assert posted.status_code == 202 and posted.headers.get("preference-applied") == "wait", posted.text
            for _ in range(3):  # three reads, three new connections
                read = await http.get(f"/api/posts/{posted.json()['id']}", headers=headers)
                assert read.status_code == 200, read.text


async def test_a_live_stream_hears_posts_accepted_by_either_worker(two_workers: str) -> None:
    async with fresh_connections(two_workers) as http:
        headers = await login(http, unique_handle("live"))
        heard: list[str] = []
        subscribed = asyncio.Event()

        async def listen() -> None:
            async with http.stream("GET", "/events?feed=all") as stream:
                async for line in stream.aiter_lines():
                    if line.startswith("retry"):
                        subscribed.set()
                    if line.startswith("data: "):
                        with contextlib.suppress(orjson.JSONDecodeError, AttributeError, TypeError):
                            heard.append(orjson.loads(line[6:])["id"])

        listener = asyncio.create_task(listen())
        try:
            await asyncio.wait_for(subscribed.wait(), 30)
            ids = []
            for i in range(BURST):
                posted = await http.post("/api/posts", json={"body": f"live {i}"}, headers=headers)
                assert posted.status_code == 202, posted.text
                ids.append(posted.json()["id"])

            async def missing() -> set[str]:
                return set(ids) - set(heard)

            await eventually(missing, until=lambda m: not m, timeout=60)
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
