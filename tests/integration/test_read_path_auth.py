"""The home timeline checks its viewer in the round trip that reads its window: an ended session, a suspended account
and an expired token are still refused, and the window is only read for a viewer let in. That round trip goes on
connections of its own (`chirp.redis_client.RoundTrips`): it answers as the client's pipelines do, and a connection
Redis closed or a round trip cut short does not leave a wrong answer for the next one."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import jwt
import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.applications import Starlette

from chirp.redis_client import RoundTrips, evalsha_of, pipelined
from chirp.settings import Settings
from gateway.auth.tokens import sign_claims
from store.reports import SUSPENDED_KEY
from tests.integration.helpers import forge, login, unique_handle

TIMELINE = "/api/timeline"


def claims_of(headers: dict[str, str]) -> dict[str, object]:
    return jwt.decode(headers["Authorization"].removeprefix("Bearer "), options={"verify_signature": False})


async def test_an_ended_session_is_refused_after_its_token_was_accepted(client: httpx.AsyncClient) -> None:
    headers = await login(client, unique_handle("tl-auth"))
    assert (await client.get(TIMELINE, headers=headers)).status_code == 200  # the token is now verified and kept
    assert (await client.post("/auth/logout", headers=headers)).status_code == 200
    refused = await client.get(TIMELINE, headers=headers)
    assert refused.status_code == 401, refused.text
    assert refused.json()["error"]["code"] == "unauthorized"


async def test_a_suspended_account_is_refused(client: httpx.AsyncClient, redis_client: aioredis.Redis) -> None:
    headers = await login(client, unique_handle("tl-auth"))
    assert (await client.get(TIMELINE, headers=headers)).status_code == 200
    user_id = str(claims_of(headers)["sub"])
    await redis_client.sadd(SUSPENDED_KEY, user_id)
    try:
        refused = await client.get(TIMELINE, headers=headers)
    finally:
        await redis_client.srem(SUSPENDED_KEY, user_id)
    assert refused.status_code == 403, refused.text


async def test_an_expired_token_of_a_live_session_is_refused(
    client: httpx.AsyncClient, app: Starlette, settings: Settings
) -> None:
    headers = await login(client, unique_handle("tl-auth"))
    now = int(time.time())
    past = now - settings.jwt_leeway_seconds - 60
    claims = {**claims_of(headers), "jti": uuid.uuid4().hex, "iat": past - 300, "nbf": past - 300, "exp": past}
    token = sign_claims(app.state.chirp.keys, claims)
    refused = await client.get(TIMELINE, headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 401, refused.text
    assert 'error_description="expired"' in refused.headers["www-authenticate"]


async def test_anonymous_is_refused_whatever_the_query(client: httpx.AsyncClient) -> None:
    for params in ({}, {"cursor": forge(["x", 1])}, {"limit": "0"}):
        assert (await client.get(TIMELINE, params=params)).status_code == 401
    headers = await login(client, unique_handle("tl-auth"))
    refused = await client.get(TIMELINE, params={"cursor": forge(["x", 1])}, headers=headers)
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "cursor"


@pytest.mark.parametrize("direct", [False, True], ids=["client", "round_trips"])
async def test_a_script_redis_does_not_hold_yet_is_loaded_and_the_pipeline_sent_again(
    redis_client: aioredis.Redis, direct: bool
) -> None:
    script = redis_client.register_script(f"return 'fresh {uuid.uuid4().hex}' .. ARGV[1]")  # never loaded before

    def queue(pipe: object) -> None:
        pipe.ping()  # type: ignore[attr-defined]
        evalsha_of(pipe, script, [], ["!"])  # type: ignore[arg-type]

    trips = RoundTrips(redis_client)
    try:
        replies = await (trips.pipelined(queue, [script]) if direct else pipelined(redis_client, queue, [script]))
    finally:
        await trips.aclose()
    assert replies[0] is True and str(replies[1]).startswith("fresh ") and str(replies[1]).endswith("!")


async def test_round_trips_answer_as_the_clients_pipelines(redis_client: aioredis.Redis) -> None:
    key = f"chirp:test:trips:{uuid.uuid4().hex}"

    def queue(pipe: Any) -> None:
        pipe.rpush(key, "a", "ü").exists(key).sismember(key + ":set", "x").get(key + ":none").incr(key)
        pipe.lrange(key, 0, -1)

    trips = RoundTrips(redis_client)
    try:
        ours, theirs = await trips.pipelined(queue), await pipelined(redis_client, queue)
    finally:
        await trips.aclose()
        await redis_client.delete(key)
    assert [type(r) for r in ours] == [type(r) for r in theirs]
    assert ours[1:4] == theirs[1:4] == [1, False, None] and ours[5] == ["a", "ü"]
    assert ours[0] == 2 and theirs[0] == 4 and theirs[5] == ["a", "ü", "a", "ü"]
    assert isinstance(ours[4], ResponseError)  # INCR of a list: its error in its place, the rest answered


async def test_a_closed_or_interrupted_connection_leaves_no_wrong_answer(redis_client: aioredis.Redis) -> None:
    trips = RoundTrips(redis_client)
    empty = f"chirp:test:trips:{uuid.uuid4().hex}"
    try:
        (first,) = await trips.pipelined(lambda pipe: pipe.client_id())
        await redis_client.client_kill_filter(_id=first)  # Redis closed it (a restart, a timeout)
        (second,) = await trips.pipelined(lambda pipe: pipe.client_id())
        assert second != first
        blocked = asyncio.create_task(trips.pipelined(lambda pipe: pipe.blpop([empty], timeout=2)))
        await asyncio.sleep(0.2)
        blocked.cancel()  # the request went away mid-round trip: its reply must not answer the next one
        with pytest.raises(asyncio.CancelledError):
            await blocked
        await redis_client.rpush(empty, "late")
        assert await trips.pipelined(lambda pipe: pipe.ping().get(empty + ":none")) == [True, None]
    finally:
        await trips.aclose()
        await redis_client.delete(empty)


async def test_a_reply_later_than_the_socket_timeout_fails_as_redis_times_out(settings: Settings) -> None:
    slow = aioredis.Redis.from_url(settings.redis_url, decode_responses=True, socket_timeout=0.2)
    trips = RoundTrips(slow)
    started = time.monotonic()
    try:
        with pytest.raises(RedisTimeoutError):  # what the gateway answers 503 for (gateway/errors.py)
            await trips.pipelined(lambda pipe: pipe.blpop([f"chirp:test:trips:{uuid.uuid4().hex}"], timeout=3))
        assert time.monotonic() - started < 1.5  # two tries of 0.2 s, not BLPOP's 3 s
        assert await trips.pipelined(lambda pipe: pipe.ping()) == [True]
    finally:
        await trips.aclose()
        await slow.aclose()


async def test_concurrent_round_trips_share_one_write_and_each_gets_its_own_replies(
    redis_client: aioredis.Redis,
) -> None:
    key = f"chirp:test:trips:{uuid.uuid4().hex}"
    await redis_client.mset({f"{key}:{i}": f"v{i}" for i in range(50)})
    trips = RoundTrips(redis_client)
    try:
        await trips.pipelined(lambda pipe: pipe.ping())  # connected, on the connection it drives itself
        link = trips._link
        assert link is not None, "RoundTrips fell back to the client's pipelines: redis-py's internals changed?"
        writes: list[bytes] = []
        transport = link.transport
        write = transport.write

        def counted(data: bytes) -> None:
            writes.append(data)
            write(data)

        link.transport = type("Counted", (), {"write": staticmethod(counted), "abort": transport.abort})()

        def queue(i: int) -> Any:
            return lambda pipe: pipe.get(f"{key}:{i}").exists(f"{key}:{i}").sismember(key, "x")

        replies = await asyncio.gather(*(trips.pipelined(queue(i)) for i in range(50)))
        link.transport = transport
    finally:
        await trips.aclose()
        await redis_client.delete(*(f"{key}:{i}" for i in range(50)))
    assert replies == [[f"v{i}", 1, False] for i in range(50)]  # each its own, shaped as redis-py shapes them
    assert len(writes) == 1  # the 50 pipelines asked in one turn of the loop went out in one write
