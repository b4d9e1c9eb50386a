"""Refresh-token sessions against a real Redis: rotation, reuse detection, revocation, expiry."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from gateway.auth.sessions import SessionError, SessionStore
from tests.conftest import eventually


@pytest.fixture
async def store(redis_client: aioredis.Redis) -> AsyncIterator[SessionStore]:
    prefix = f"chirp:test:{uuid.uuid4().hex}"
    yield SessionStore(redis_client, ttl_days=30, prefix=prefix)
    keys = [key async for key in redis_client.scan_iter(f"{prefix}:*")]
    if keys:
        await redis_client.delete(*keys)


async def _keys(redis_client: aioredis.Redis, store: SessionStore) -> list[str]:
    return [key async for key in redis_client.scan_iter(f"{store._prefix}:*")]


async def test_create_then_rotate(store: SessionStore) -> None:
    sid, token = await store.create("user-1")
    assert await store.is_active(sid)
    sid2, user, token2 = await store.rotate(token)
    assert (sid2, user) == (sid, "user-1")
    assert token2 != token and len(token2) >= 43
    sid3, _, token3 = await store.rotate(token2)
    assert sid3 == sid and token3 not in (token, token2)
    assert await store.is_active(sid)


async def test_reusing_a_rotated_token_revokes_the_session(store: SessionStore) -> None:
    sid, token = await store.create("user-1")
    _, _, newer = await store.rotate(token)
    with pytest.raises(SessionError) as caught:
        await store.rotate(token)
    assert caught.value.reason == "reused"
    assert not await store.is_active(sid)
    with pytest.raises(SessionError) as caught:
        await store.rotate(newer)  # the thief's or the user's fresh token dies with the session
    assert caught.value.reason == "revoked"


async def test_unknown_token(store: SessionStore) -> None:
    with pytest.raises(SessionError) as caught:
        await store.rotate("not-a-token")
    assert caught.value.reason == "unknown"


async def test_revoke(store: SessionStore) -> None:
    sid, token = await store.create("user-1")
    other_sid, other_token = await store.create("user-1")
    await store.revoke(sid)
    assert not await store.is_active(sid)
    with pytest.raises(SessionError) as caught:
        await store.rotate(token)
    assert caught.value.reason == "revoked"
    assert await store.is_active(other_sid)
    assert (await store.rotate(other_token))[0] == other_sid
    await store.revoke("no-such-session")  # idempotent


async def test_concurrent_use_of_one_token_rotates_once(store: SessionStore) -> None:
    sid, token = await store.create("user-1")
    results = await asyncio.gather(*(store.rotate(token) for _ in range(10)), return_exceptions=True)
    assert sum(isinstance(r, tuple) for r in results) == 1
    reasons = [r.reason for r in results if isinstance(r, SessionError)]
    assert "reused" in reasons and set(reasons) <= {"reused", "revoked"}
    assert not await store.is_active(sid)


async def test_only_hashes_are_stored_and_everything_expires(redis_client: aioredis.Redis, store: SessionStore) -> None:
    sid, token = await store.create("user-1")
    _, _, newer = await store.rotate(token)
    keys = await _keys(redis_client, store)
    assert len(keys) == 4  # the session, both refresh tokens, the user's set of sessions (ids only)
    session_ttl = await redis_client.pttl(f"{store._prefix}:session:{sid}")
    assert 29 * 86_400_000 < session_ttl <= 30 * 86_400_000
    for key in keys:
        assert 0 < await redis_client.pttl(key) <= session_ttl + 1_000  # set within the same second as the session
        assert token not in key and newer not in key
    stored = await redis_client.hgetall(f"{store._prefix}:session:{sid}")
    assert stored["user_id"] == "user-1"
    assert token not in stored.values() and newer not in stored.values()


async def test_expired_session_is_inactive(redis_client: aioredis.Redis) -> None:
    prefix = f"chirp:test:{uuid.uuid4().hex}"
    store = SessionStore(redis_client, ttl_days=0.2 / 86_400, prefix=prefix)  # 200 ms
    sid, token = await store.create("user-1")
    assert await store.is_active(sid)

    async def active() -> bool:
        return await store.is_active(sid)

    await eventually(active, until=lambda alive: not alive, timeout=5)
    with pytest.raises(SessionError) as caught:
        await store.rotate(token)
    assert caught.value.reason in ("unknown", "revoked")
