"""Shared helpers for gateway tests: logging in through the dev login."""

from __future__ import annotations

import base64
import json
import subprocess
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import ConsumerRecord

from consumers.runtime import decode, load_keys
from schemas.events import BY_TOPIC, Event, new_id
from store.keys import PgKeyStore


def unique_handle(prefix: str = "u") -> str:
    """A handle no other test uses (GitHub logins: letters, digits, hyphens, at most 39)."""
    return f"{prefix}-{new_id()[-12:].lower()}"


async def login(client: httpx.AsyncClient, handle: str) -> dict[str, str]:
    """Log `handle` in with the dev login (registering them if new); returns the request headers to use."""
    response = await client.post("/auth/dev-login", json={"login": handle})
    assert response.status_code == 200, response.text
    client.cookies.clear()  # API tests authenticate with the header, not the browser cookies
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def forge(value: object) -> str:
    """A cursor as a client could make one: any JSON value, base64url-encoded without padding."""
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


async def opened(pg: asyncpg.Pool, records: list[ConsumerRecord]) -> list[Event]:
    """Records read from Kafka as consumers read them: sealed personal fields opened with their keys."""
    keys = await load_keys(PgKeyStore(pg), records)
    return [decode(r, BY_TOPIC[r.topic], keys) for r in records]


def stop(proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Stop a child process as an operator would (SIGTERM, a graceful shutdown), killing it after `timeout` s."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def count_redis_round_trips(state: Any, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """From now on, one entry per Redis round trip the gateway's `state` takes: through the client's pool, or on
    the session check's own connections (`RoundTrips`)."""
    taken: list[object] = []
    pool, round_trips = state.redis.connection_pool, state.round_trips
    get_connection, round_trip = pool.get_connection, round_trips._round_trip

    async def counted(*args: object, **kwargs: object) -> object:
        taken.append(args)
        return await get_connection(*args, **kwargs)

    async def counted_trip(*args: object, **kwargs: object) -> object:
        taken.append(args)
        return await round_trip(*args, **kwargs)

    monkeypatch.setattr(pool, "get_connection", counted)
    monkeypatch.setattr(round_trips, "_round_trip", counted_trip)
    return taken
