"""Liveness and readiness: `/healthz` says the process is up; `/readyz` that Kafka, Redis and PostgreSQL answer
(503 when one does not), and how the consumer groups are doing (`consumers`).

A consumer group with no member, or more than `ready_max_lag` events behind, makes `/readyz` **degraded**: 200
with `"status": "degraded"` and the detail, never 503. Readiness decides whether this gateway gets traffic, and
the gateway still takes writes (Kafka keeps them until the consumer is back) and serves reads while a consumer is
down or behind: a 503 would turn stale read models into an outage of the whole API. Operators alert on it
(`chirp_ready{check="consumers"}`, deploy/prometheus/alerts.yml). The groups' state is asked from Kafka at most
every `ready_cache_s` seconds, so probes do not load the broker.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import Any

from prometheus_client import Gauge
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from chirp.kafka_admin import GroupLag, group_lags
from chirp.settings import Settings
from gateway.errors import JSONResponse
from gateway.openapi import Status, contract
from gateway.state import State, state_of

TIMEOUT_S = 2.0
READY = Gauge("chirp_ready", "1 when the last /readyz found this check ok", ["check"])  # kafka … consumers


@contract(Status)
async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def _kafka(state: State) -> None:
    if not await state.broker.ping(timeout=TIMEOUT_S):
        raise ConnectionError("no broker answers")


async def _redis(state: State) -> None:
    await state.redis.ping()


async def _postgres(state: State) -> None:
    async with state.pg.acquire(timeout=TIMEOUT_S) as conn:
        await conn.fetchval("SELECT 1")


CHECKS = {"kafka": _kafka, "redis": _redis, "postgres": _postgres}


async def _check(name: str, state: State) -> tuple[str, str]:
    try:
        await asyncio.wait_for(CHECKS[name](state), TIMEOUT_S)
    except Exception as exc:
        return name, f"down: {type(exc).__name__}"
    return name, "ok"


def _group_status(lag: GroupLag, max_lag: int) -> dict[str, Any]:
    status = "no_members" if not lag.members else "lagging" if lag.lag > max_lag else "ok"
    return {"status": status, "members": lag.members, "lag": lag.lag}


_cache: dict[tuple[str, str, tuple[str, ...]], tuple[float, dict[str, dict[str, Any]]]] = {}
# One question to Kafka at a time (per event loop); concurrent probes take its answer.
_asking: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


async def consumer_groups(settings: Settings) -> dict[str, dict[str, Any]]:
    """Consumer name → status (`ok`, `no_members`, `lagging`, `unknown: <error>`), members and lag."""
    key = (settings.bootstrap_servers, settings.consumer_group_prefix, settings.ready_consumers)
    async with _asking.setdefault(asyncio.get_running_loop(), asyncio.Lock()):
        if (cached := _cache.get(key)) and time.monotonic() - cached[0] < settings.ready_cache_s:
            return cached[1]
        names = {settings.group(name): name for name in settings.ready_consumers}
        try:
            lags = await asyncio.wait_for(group_lags(settings, list(names)), TIMEOUT_S)
        except Exception as exc:
            found = {name: {"status": f"unknown: {type(exc).__name__}"} for name in names.values()}
        else:
            found = {name: _group_status(lags[group], settings.ready_max_lag) for group, name in names.items()}
        _cache[key] = (time.monotonic(), found)
        return found


@contract(Status, errors=(503,))
async def readyz(request: Request) -> Response:
    state = state_of(request)
    checked, consumers = await asyncio.gather(
        asyncio.gather(*(_check(name, state) for name in CHECKS)), consumer_groups(state.settings)
    )
    results = dict(checked)
    results["consumers"] = "ok" if all(c["status"] == "ok" for c in consumers.values()) else "degraded"
    for name, status in results.items():
        READY.labels(name).set(status == "ok")
    failing = [name for name in CHECKS if results[name] != "ok"]
    overall = "unavailable" if failing else results["consumers"]
    body = {"status": overall, "checks": results, **results, "consumers": consumers}
    if failing:
        body["error"] = {"code": "unavailable", "message": f"not ready: {', '.join(failing)}"}
    return JSONResponse(body, 503 if failing else 200)


routes = [Route("/healthz", healthz), Route("/readyz", readyz)]
