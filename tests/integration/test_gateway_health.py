"""Health endpoints and JSON errors of the gateway, on the real services."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator

import httpx
import pytest

from chirp.settings import Settings
from gateway.app import create_app
from tests.conftest import eventually


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
    assert ready.json()["checks"] == {"kafka": "ok", "redis": "ok", "postgres": "ok"}


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


async def test_unknown_route_is_a_json_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/no-such-thing")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
