"""Helpers shared by the users, follows and timeline tests: events published directly, users logged in for real."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette

from chirp import redis_client
from chirp.settings import Settings
from consumers.runtime import Context
from producers.broker import Publisher
from schemas.events import Event, FollowData, UserFollowed, UserRegistered, UserRegisteredData, UserUnfollowed, new_id
from tests.conftest import eventually
from tests.integration.helpers import login, unique_handle

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    """A fixed instant, `seconds` after T0: tests choose the order of occurred_at, not the clock."""
    return T0 + timedelta(seconds=seconds)


def registered(handle: str | None = None, *, when: float = 0, user_id: str | None = None, **fields: Any) -> Event:
    """A user-registered event for a new user (unique id and handle unless given)."""
    data = UserRegisteredData(user_id=user_id or f"u-{new_id()}", handle=handle or unique_handle(), **fields)
    return UserRegistered(occurred_at=at(when), payload=data)


def follow_event(follower: str, followee: str, *, active: bool, when: float) -> Event:
    data = FollowData(follower_id=follower, followee_id=followee)
    cls = UserFollowed if active else UserUnfollowed
    return cls(occurred_at=at(when), payload=data)


async def user_row(pg: asyncpg.Pool, user_id: str) -> dict[str, Any] | None:
    row = await pg.fetchrow("SELECT * FROM users WHERE user_id = $1", user_id)
    return dict(row) if row else None


async def wait_user(pg: asyncpg.Pool, user_id: str, until: Any = bool, timeout: float = 60) -> dict[str, Any]:
    """The user's row once `until(row)` holds."""
    return await eventually(lambda: user_row(pg, user_id), until=lambda r: r is not None and until(r), timeout=timeout)


async def logged_in(client: httpx.AsyncClient, pg: asyncpg.Pool, prefix: str = "u") -> tuple[str, str, dict[str, str]]:
    """(user_id, handle, headers) of a new user logged in through the dev login, once the users projection has them."""
    handle = unique_handle(prefix)
    headers = await login(client, handle)
    user_id = (await client.get("/api/me", headers=headers)).json()["user_id"]
    await wait_user(pg, user_id)
    return user_id, handle, headers


@pytest.fixture(scope="module")
async def ctx(settings: Settings, pg: asyncpg.Pool, publisher: Publisher) -> AsyncIterator[Context]:
    """What a consumer handler gets, on the real stores: handlers called directly replay events exactly."""
    redis = redis_client.connect(settings, decode_responses=True)
    yield Context(settings=settings, pg=pg, redis=redis, publisher=publisher)
    await redis.aclose()


@pytest.fixture(scope="module")
async def api_user(app: Starlette, settings: Settings, pg: asyncpg.Pool) -> tuple[str, str, dict[str, str]]:
    """One logged-in user for a whole module (user_id, handle, headers)."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=settings.public_url) as http:
        return await logged_in(http, pg)


async def post(client: httpx.AsyncClient, headers: dict[str, str], body: str) -> str:
    """Create a post through the API; returns once it is visible in the posts read model."""
    response = await client.post("/api/posts", json={"body": body}, headers={**headers, "Prefer": "wait"})
    assert response.status_code == 202, response.text
    post_id = response.json()["id"]
    if response.headers.get("preference-applied") != "wait":  # not visible within the wait: poll for it
        await eventually(lambda: client.get(f"/api/posts/{post_id}"), until=lambda r: r.status_code == 200)
    return post_id
