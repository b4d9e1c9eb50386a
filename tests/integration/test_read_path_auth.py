"""The home timeline checks its viewer in the round trip that reads its window: an ended session, a suspended account
and an expired token are still refused, and the window is only read for a viewer let in."""

from __future__ import annotations

import time
import uuid

import httpx
import jwt
import redis.asyncio as aioredis
from starlette.applications import Starlette

from chirp.redis_client import evalsha_of, pipelined
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


async def test_a_script_redis_does_not_hold_yet_is_loaded_and_the_pipeline_sent_again(
    redis_client: aioredis.Redis,
) -> None:
    script = redis_client.register_script(f"return 'fresh {uuid.uuid4().hex}' .. ARGV[1]")  # never loaded before

    def queue(pipe: object) -> None:
        pipe.ping()  # type: ignore[attr-defined]
        evalsha_of(pipe, script, [], ["!"])  # type: ignore[arg-type]

    replies = await pipelined(redis_client, queue, [script])
    assert replies[0] is True and str(replies[1]).startswith("fresh ") and str(replies[1]).endswith("!")
