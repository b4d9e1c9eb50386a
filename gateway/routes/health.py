"""Liveness and readiness: `/healthz` says the process is up, `/readyz` that Kafka, Redis and PostgreSQL answer."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.errors import JSONResponse
from gateway.openapi import Status, contract
from gateway.state import State, state_of

TIMEOUT_S = 2.0


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


@contract(Status, errors=(503,))
async def readyz(request: Request) -> Response:
    state = state_of(request)
    results = dict(await asyncio.gather(*(_check(name, state) for name in CHECKS)))
    failing = [name for name, status in results.items() if status != "ok"]
    body = {"status": "ok" if not failing else "unavailable", "checks": results, **results}
    if failing:
        body["error"] = {"code": "unavailable", "message": f"not ready: {', '.join(failing)}"}
    return JSONResponse(body, 503 if failing else 200)


routes = [Route("/healthz", healthz), Route("/readyz", readyz)]
