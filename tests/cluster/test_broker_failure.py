"""One broker of three dies under load: nothing acknowledged is lost, 5xx only for a bounded window, every post is
visible after, and the broker comes back and catches up (every partition in sync on three replicas again)."""

from __future__ import annotations

import asyncio
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx

from ops.topics import describe
from schemas import topics
from tests.cluster.stack import Cluster
from tests.conftest import eventually
from tests.integration.helpers import login, unique_handle

# Posts per second, open loop. 200 is the figure; on a 2-core machine shared with other work the client
# itself cannot send that many beside three brokers, a gateway and the consumers, so the default is lower.
RATE = int(os.environ.get("CHIRP_CLUSTER_TEST_RATE", "100"))
DURATION_S = 24.0
KILL_AT_S = 6.0
RESTART_AT_S = 12.0
# 5xx only from the kill until the controller fences the dead broker (broker.session.timeout.ms, 9 s) and clients
# see the new leaders, plus a publish's deadline.
MAX_ERROR_WINDOW_S = 20.0
PUBLISH_DEADLINE_S = "5"  # a busy machine acknowledges acks=all writes in seconds at times; the cluster is not down


@dataclass(frozen=True)
class Sample:
    at: float  # seconds from the start of the load to the request
    done: float  # ... to its answer
    status: int  # 0: no HTTP answer
    post_id: str | None


async def _post(http: httpx.AsyncClient, headers: dict[str, str], i: int, t0: float) -> Sample:
    at = time.monotonic() - t0
    try:
        response = await http.post("/api/posts", json={"body": f"cluster post {i}"}, headers=headers)
    except httpx.HTTPError:
        return Sample(at, time.monotonic() - t0, 0, None)
    post_id = response.json().get("id") if response.status_code == 202 else None
    return Sample(at, time.monotonic() - t0, response.status_code, post_id)


async def _load(http: httpx.AsyncClient, users: list[dict[str, str]], cluster: Cluster) -> tuple[list[Sample], float]:
    """RATE posts/s for DURATION_S; node 1 is killed at KILL_AT_S and started again at RESTART_AT_S. Returns the
    samples and when the restarted cluster answered with all its brokers."""
    t0 = time.monotonic()
    tasks: list[asyncio.Task[Sample]] = []

    async def faults() -> float:
        await asyncio.sleep(KILL_AT_S)
        cluster.kill_broker(1)
        await asyncio.sleep(RESTART_AT_S - KILL_AT_S)
        await asyncio.to_thread(cluster.restart_brokers)
        return time.monotonic() - t0

    fault = asyncio.create_task(faults())
    for i in range(int(RATE * DURATION_S)):
        await asyncio.sleep(max(0.0, t0 + i / RATE - time.monotonic()))
        tasks.append(asyncio.create_task(_post(http, users[i % len(users)], i, t0)))
    samples = await asyncio.gather(*tasks)
    return samples, await fault


async def _in_sync(cluster: Cluster) -> list[str]:
    """Partitions of the app's topics with fewer than three replicas in sync, as `chirp topics` shows them."""
    app = {t.name for t in topics.ALL}
    rows = [r for r in await describe(cluster.settings) if r.topic in app]
    assert {r.replicas for r in rows} == {3}
    return [f"{r.topic}/{r.partition}: {r.in_sync} in sync" for r in rows if r.in_sync < 3 or r.leader < 0]


async def test_a_broker_dies_under_load(cluster_topics: Cluster, pg: asyncpg.Pool, tmp_path: Path) -> None:
    cluster = cluster_topics
    cluster.consume(["preparse", "posts"], tmp_path / "consumers.log")
    url = cluster.gateway(1, tmp_path / "gateway.log", {"CHIRP_PUBLISH_TIMEOUT_S": PUBLISH_DEADLINE_S})
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
    async with httpx.AsyncClient(base_url=url, timeout=15, limits=limits) as http:
        users = [await login(http, unique_handle("load")) for _ in range(8)]
        for headers in users:  # the gateway's producer knows every partition's leader before the clock starts
            await eventually(lambda h=headers: _post(http, h, -1, time.monotonic()), until=lambda s: s.status == 202)
        samples, restarted_at = await _load(http, users, cluster)

        (tmp_path / "samples.txt").write_text(
            "".join(f"{s.at:.3f} {s.done:.3f} {s.status} {s.post_id}\n" for s in samples)
        )
        accepted = [s.post_id for s in samples if s.post_id]
        errors = sorted((s for s in samples if s.status == 0 or s.status >= 500), key=lambda s: s.done)
        others = sorted({s.status for s in samples} - {0, 202, 503})
        window = (errors[-1].done - KILL_AT_S) if errors else 0.0  # from the kill to the last 5xx answered
        sent_rate = len(samples) / samples[-1].at
        first = f"{errors[0].done:.2f}" if errors else "-"
        print(
            f"\n{len(samples)} posts at {RATE}/s (sent at {sent_rate:.0f}/s): {len(accepted)} accepted,"
            f" {len(errors)} 5xx or no answer"
            f" (first at {first} s, window {window:.2f} s; broker killed at {KILL_AT_S} s, cluster whole again"
            f" at {restarted_at:.2f} s)"
        )
        assert not others, f"answers other than 202 and 503: {others}"
        early = [(round(e.done, 2), e.status) for e in errors if e.done < KILL_AT_S]
        assert not early, f"5xx or no answer before the broker died: {early[:10]}"
        assert window <= MAX_ERROR_WINDOW_S, f"5xx for {window:.1f} s"
        assert len(accepted) >= 0.8 * len(samples)

        async def missing() -> int:
            found = await pg.fetchval("SELECT count(*) FROM posts WHERE post_id = ANY($1::text[])", accepted)
            return len(accepted) - int(found)

        await eventually(missing, until=lambda n: n == 0, timeout=120)
        sem = asyncio.Semaphore(32)

        async def status(post_id: str) -> int:
            async with sem:
                return (await http.get(f"/api/posts/{post_id}")).status_code

        statuses = await asyncio.gather(*(status(i) for i in random.sample(accepted, min(1000, len(accepted)))))
        assert set(statuses) == {200}

    started = time.monotonic()
    await eventually(lambda: _in_sync(cluster), until=lambda lagging: not lagging, timeout=120)
    print(f"every partition on three in-sync replicas {time.monotonic() - started:.1f} s after the load")
