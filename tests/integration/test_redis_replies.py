"""`chirp.redis_client` reads replies already received without arming a timeout: same results, same errors, and
a reply that is late still times out."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
import redis.exceptions

from chirp import redis_client
from chirp.settings import Settings
from schemas.events import new_id


@pytest.fixture
async def clients(settings: Settings) -> AsyncIterator[tuple[aioredis.Redis, aioredis.Redis]]:
    ours = redis_client.from_url(settings.redis_url, decode_responses=True)
    theirs = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    yield ours, theirs
    await ours.aclose()
    await theirs.aclose()


async def run(client: aioredis.Redis, key: str) -> list[object]:
    async with client.pipeline(transaction=False) as pipe:
        for i in range(500):
            pipe.zadd(key, {f"m{i}": i})
            pipe.hset(f"{key}:h", f"f{i}", "x" * (i % 50))
        pipe.set(f"{key}:s", "not a number")
        pipe.incr(f"{key}:s")  # an error reply in the middle of the replies
        pipe.zrange(key, 0, 4, withscores=True)
        pipe.hgetall(f"{key}:h")
        pipe.get(f"{key}:missing")
        pipe.delete(key, f"{key}:h", f"{key}:s")
        return await pipe.execute(raise_on_error=False)


async def test_a_pipeline_gets_the_replies_redis_py_gets(clients: tuple[aioredis.Redis, aioredis.Redis]) -> None:
    ours, theirs = clients
    mine, reference = await run(ours, f"rr:{new_id()}"), await run(theirs, f"rr:{new_id()}")
    assert len(mine) == len(reference) == 1006
    assert [type(r) for r in mine] == [type(r) for r in reference]
    error = mine[1001]
    assert isinstance(error, redis.exceptions.ResponseError) and str(error) == str(reference[1001])
    assert [r for r in mine if not isinstance(r, Exception)] == [r for r in reference if not isinstance(r, Exception)]


async def test_an_error_reply_raises_and_the_connection_goes_on(clients: tuple[aioredis.Redis, aioredis.Redis]) -> None:
    ours, _ = clients
    key = f"rr:{new_id()}"
    await ours.set(key, "text")
    with pytest.raises(redis.exceptions.ResponseError, match="not an integer"):
        await ours.incr(key)
    assert await ours.get(key) == "text"
    await ours.delete(key)


async def test_a_late_reply_still_times_out(settings: Settings) -> None:
    client = redis_client.from_url(settings.redis_url, socket_timeout=0.2)
    try:
        with pytest.raises(redis.exceptions.TimeoutError):
            await client.blpop([f"rr:{new_id()}"], timeout=2)  # the server answers after 2 s
        assert await client.ping()
    finally:
        await client.aclose()
