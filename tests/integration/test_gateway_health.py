"""Health endpoints and JSON errors of the gateway, on the real services."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from chirp.kafka_admin import GroupLag, group_offsets
from chirp.settings import Settings
from gateway.app import create_app
from gateway.routes import health
from producers.broker import Publisher
from tests.conftest import eventually
from tests.integration import replay_probe as probe


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def own_redis() -> Iterator[int]:
    """A Redis of this test's own, so stopping it disturbs nobody else."""
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="chirp-redis-")
    cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", workdir]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    yield port
    proc.kill()
    proc.wait()
    shutil.rmtree(workdir, ignore_errors=True)


async def test_healthz_and_ready(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    checks = ready.json()["checks"]
    assert {k: checks[k] for k in ("kafka", "redis", "postgres")} == {"kafka": "ok", "redis": "ok", "postgres": "ok"}
    assert checks["consumers"] in ("ok", "degraded"), "consumers never make it 503"


async def test_readyz_names_redis_when_it_stops_and_recovers(settings: Settings, own_redis: int) -> None:
    app = create_app(settings.model_copy(update={"redis_port": own_redis}))
    cmd_up = ["redis-server", "--port", str(own_redis), "--bind", "127.0.0.1", "--save", "", "--daemonize", "yes"]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:

            async def ready() -> httpx.Response:
                return await http.get("/readyz")

            await eventually(ready, until=lambda r: r.status_code == 200)
            await asyncio.to_thread(
                subprocess.run, ["redis-cli", "-p", str(own_redis), "shutdown", "nosave"], check=False
            )
            down = await eventually(ready, until=lambda r: r.status_code == 503)
            body = down.json()
            assert body["redis"].startswith("down") and body["kafka"] == "ok" and body["postgres"] == "ok"
            assert "redis" in body["error"]["message"]
            await asyncio.to_thread(subprocess.run, cmd_up, check=True, stdout=subprocess.DEVNULL)
            await eventually(ready, until=lambda r: r.status_code == 200)
            await asyncio.to_thread(
                subprocess.run, ["redis-cli", "-p", str(own_redis), "shutdown", "nosave"], check=False
            )


async def test_readyz_reports_each_consumer_group_running_then_killed(
    settings: Settings, publisher: Publisher, pg: asyncpg.Pool
) -> None:
    """A real consumer process: running and caught up, its group is `ok`; killed, it has no member and its lag
    grows, and `/readyz` says `degraded` with that detail (200: the gateway itself still serves)."""
    group, table, topic = await probe.fresh(settings, "ready", partitions=1)
    mine = settings.model_copy(update={"ready_consumers": (group,), "ready_cache_s": 0.2})
    app = create_app(mine)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:

            async def ready() -> httpx.Response:
                return await http.get("/readyz")

            with probe.running(group, topic, table) as proc:
                await probe.send(publisher, topic, probe.posts(1))
                up = await eventually(
                    ready,
                    until=lambda r: r.json()["consumers"][group] == {"status": "ok", "members": 1, "lag": 0},
                    timeout=90,  # a consumer process starting on a busy machine
                )
                assert (
                    up.status_code == 200 and up.json()["status"] == "ok" and up.json()["checks"]["consumers"] == "ok"
                )
                assert await pg.fetchval(f"SELECT count(*) FROM {table}") == 1
                await eventually(  # commits are gathered for consumer_commit_interval_ms: kill after this one
                    lambda: group_offsets(settings, [settings.group(group)]),
                    until=lambda offsets: bool(offsets[settings.group(group)]),
                )
                proc.kill()
                proc.wait()
            await probe.send(publisher, topic, probe.posts(5))
            down = await eventually(
                ready,
                until=lambda r: r.json()["consumers"][group] == {"status": "no_members", "members": 0, "lag": 5},
                timeout=60,  # a killed member leaves the group when its session times out
            )
            body = down.json()
            assert (
                down.status_code == 200 and body["status"] == "degraded" and body["checks"]["consumers"] == "degraded"
            )
            metrics = (await http.get("/metrics")).text
            assert 'chirp_ready{check="consumers"} 0.0' in metrics and 'chirp_ready{check="kafka"} 1.0' in metrics
    await pg.execute(f"DROP TABLE IF EXISTS {table}")


async def test_readyz_asks_kafka_about_consumers_at_most_once_per_cache_period(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = []
    real = health.group_lags

    async def counting(*args: Any) -> Any:
        asked.append(time.monotonic())
        return await real(*args)

    monkeypatch.setattr(health, "group_lags", counting)
    app = create_app(settings.model_copy(update={"ready_cache_s": 60.0, "ready_consumers": ("posts", "search")}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            started = time.monotonic()
            answers = await asyncio.gather(*(http.get("/readyz") for _ in range(20)))
            elapsed = time.monotonic() - started
    assert all(a.status_code == 200 and set(a.json()["consumers"]) == {"posts", "search"} for a in answers)
    statuses = {c["status"] for c in answers[0].json()["consumers"].values()}
    assert statuses <= {"ok", "no_members", "lagging"}, "Kafka answered about both groups"
    assert len(asked) <= 1, "one question to Kafka answers every probe of the period"
    assert elapsed < health.TIMEOUT_S + 1


def test_a_group_is_lagging_above_the_threshold() -> None:
    assert health._group_status(GroupLag("g", 2, 11), max_lag=10)["status"] == "lagging"
    assert health._group_status(GroupLag("g", 2, 10), max_lag=10)["status"] == "ok"
    assert health._group_status(GroupLag("g", 0, 0), max_lag=10)["status"] == "no_members"


async def test_unknown_route_is_a_json_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/no-such-thing")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_readyz_watches_every_consumer_by_default_and_imports_none() -> None:
    from consumers.runtime import all_consumers

    assert set(Settings().ready_consumers) == {c.name for c in all_consumers()}
    code = "import sys, gateway.app; print(sorted(m for m in sys.modules if m.startswith(('consumers', 'ops'))))"
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert imported.strip() == "[]", "the gateway reads consumer groups through chirp.kafka_admin, not consumers or ops"
