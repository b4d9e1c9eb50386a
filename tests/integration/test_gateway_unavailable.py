"""A store or Kafka that is unavailable: the gateway answers 503 with `Retry-After` and its JSON error within 2 s.

Each test breaks a service of its own (tests/integration/faults.py): a Redis it stops or fills, a Kafka broker
it pauses or kills, a proxy in front of PostgreSQL it cuts.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
import redis
from starlette.applications import Starlette

from chirp.settings import Settings
from gateway.app import create_app
from gateway.metrics import REQUESTS
from tests.conftest import eventually
from tests.integration.faults import TcpProxy, free_port, private_kafka, private_redis
from tests.integration.helpers import login, unique_handle

DEADLINE_S = 2.0


@contextlib.asynccontextmanager
async def gateway(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway app of its own for `settings`, and a client talking to it."""
    app: Starlette = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=settings.public_url) as client:
            yield client


async def timed(client: httpx.AsyncClient, method: str, url: str, **kwargs: object) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await client.request(method, url, **kwargs)  # type: ignore[arg-type]
    return response, time.monotonic() - started


def assert_unavailable(response: httpx.Response, elapsed: float, dependency: str) -> dict[str, object]:
    """503, `Retry-After`, the JSON error naming the dependency, answered in time; returns the error object."""
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) > 0
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == "unavailable" and error["message"]
    assert error["dependency"] == dependency
    assert elapsed < DEADLINE_S, f"answered after {elapsed:.2f}s"
    return error


def _ignore(call: Callable[..., object], *args: object) -> None:
    with contextlib.suppress(redis.RedisError):
        call(*args)


async def _busy(port: int) -> bool:
    try:
        redis.Redis(port=port).ping()
    except redis.RedisError as exc:
        return str(exc).startswith("BUSY")
    return False


def count(method: str, route: str, status: int) -> float:
    return REQUESTS.labels(method, route, str(status))._value.get()


async def test_redis_stopped_or_out_of_memory_gives_503(settings: Settings) -> None:
    with private_redis() as (port, proc):
        own = settings.model_copy(update={"redis_port": port, "redis_db": 0})
        async with gateway(own) as client:
            headers = await login(client, unique_handle("redis"))
            ok = await client.post("/api/posts", json={"body": "before the fault"}, headers=headers)
            assert ok.status_code == 202, ok.text

            admin = redis.Redis(port=port)
            admin.config_set("maxmemory", 1)  # every write is refused: OOM
            before = count("POST", "/api/posts", 503)
            response, elapsed = await timed(client, "POST", "/api/posts", json={"body": "oom"}, headers=headers)
            assert_unavailable(response, elapsed, "redis")
            # Refused by the rate limiter (a middleware), counted under the route it was for.
            assert count("POST", "/api/posts", 503) == before + 1
            admin.config_set("maxmemory", 0)

            admin.replicaof("127.0.0.1", str(free_port()))  # a replica of a master that is gone: READONLY
            response, elapsed = await timed(client, "POST", "/api/posts", json={"body": "ro"}, headers=headers)
            assert_unavailable(response, elapsed, "redis")
            admin.replicaof("NO", "ONE")

            admin.config_set("busy-reply-threshold", 50)  # a script hogging the server: BUSY for everyone else
            hog = threading.Thread(target=lambda: _ignore(redis.Redis(port=port).eval, "while true do end", 0))
            hog.start()
            try:
                await eventually(lambda: _busy(port))
                response, elapsed = await timed(client, "POST", "/api/posts", json={"body": "busy"}, headers=headers)
                assert_unavailable(response, elapsed, "redis")
            finally:
                admin.script_kill()
                hog.join()
            ok = await client.post("/api/posts", json={"body": "after the faults"}, headers=headers)
            assert ok.status_code == 202, ok.text

            proc.kill()
            proc.wait()
            for _ in range(3):  # stale pooled connections and new ones alike
                response, elapsed = await timed(client, "POST", "/api/posts", json={"body": "down"}, headers=headers)
                assert_unavailable(response, elapsed, "redis")
            response, elapsed = await timed(client, "GET", "/api/timeline", headers=headers)
            assert_unavailable(response, elapsed, "redis")


async def test_postgres_unreachable_gives_503(settings: Settings) -> None:
    proxy = await TcpProxy(settings.postgres_port).start()
    own = settings.model_copy(update={"postgres_port": proxy.port})
    async with gateway(own) as client:
        headers = await login(client, unique_handle("pg"))
        assert (await client.get("/api/posts/nope")).status_code == 404

        await proxy.cut()
        for _ in range(3):  # pooled connections reset, then new ones refused
            response, elapsed = await timed(client, "GET", "/api/posts/nope")
            assert_unavailable(response, elapsed, "postgres")
        body = {"body": "a reply", "reply_to": "nope"}
        response, elapsed = await timed(client, "POST", "/api/posts", json=body, headers=headers)
        assert_unavailable(response, elapsed, "postgres")
        # A new post stores its erasure key before it is published: without PostgreSQL it is refused, not lost.
        response, elapsed = await timed(client, "POST", "/api/posts", json={"body": "a post"}, headers=headers)
        assert_unavailable(response, elapsed, "postgres")


@pytest.mark.parametrize("fault", ["paused", "killed"])
async def test_kafka_not_answering_or_down_gives_503_in_time(settings: Settings, fault: str) -> None:
    with private_kafka(settings) as (own, pid):
        async with gateway(own) as client:
            headers = await login(client, unique_handle("kafka"))
            ok = await client.post("/api/posts", json={"body": "before the fault"}, headers=headers)
            assert ok.status_code == 202, ok.text

            os.kill(pid, signal.SIGSTOP if fault == "paused" else signal.SIGKILL)
            try:
                response, elapsed = await timed(client, "POST", "/api/posts", json={"body": "x"}, headers=headers)
                error = assert_unavailable(response, elapsed, "kafka")
                # The record had left for the broker: it may still be written once Kafka answers again.
                assert error["may_have_been_published"] is True
            finally:
                if fault == "paused":
                    os.kill(pid, signal.SIGCONT)
