"""The Redis token bucket: bursts, refill, atomicity under concurrency, per-action limits."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from gateway.ratelimit import LIMITS, Decision, Limit, RateLimiter, rate_key
from tests.conftest import eventually


@pytest.fixture
async def prefix(redis_client: aioredis.Redis) -> AsyncIterator[str]:
    prefix = f"chirp:test:{uuid.uuid4().hex}:rl"
    yield prefix
    keys = [key async for key in redis_client.scan_iter(f"{prefix}:*")]
    if keys:
        await redis_client.delete(*keys)


async def test_buckets_spent_together_stop_at_the_first_refusal(redis_client: aioredis.Redis, prefix: str) -> None:
    """A request's buckets go in one call: the viewer's first; when it refuses, the address's is not spent."""
    limiter = RateLimiter(redis_client, prefix=prefix)
    user, ip = f"{prefix}:user", f"{prefix}:ip"
    tight, wide = Limit(rate_per_s=0.01, burst=1), Limit(rate_per_s=0.01, burst=3)
    assert (await limiter.hit_all([(user, tight), (ip, wide)])).allowed
    refused = await limiter.hit_all([(user, tight), (ip, wide)])
    assert not refused.allowed and refused.retry_after_s > 0
    assert (await limiter.hit(ip, rate_per_s=0.01, burst=3)).remaining == 1, (
        "the refused request spent no address token"
    )
    assert (await limiter.hit(f"{prefix}:ip2", rate_per_s=0.01, burst=1)).allowed
    assert not (await limiter.hit_all([(f"{prefix}:u2", wide), (f"{prefix}:ip2", tight)])).allowed, "the address"


async def test_burst_then_refusal(redis_client: aioredis.Redis, prefix: str) -> None:
    limiter = RateLimiter(redis_client, prefix=prefix)
    key = rate_key("post", "user", "u1", prefix=prefix)
    decisions = [await limiter.hit(key, rate_per_s=1 / 6, burst=3) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert decisions[0].retry_after_s == 0
    assert 5 < decisions[3].retry_after_s <= 6
    assert decisions[3].retry_after_header == "6"
    assert 0 < await redis_client.pttl(key) <= 3 * 6000 + 1000


async def test_refill(redis_client: aioredis.Redis, prefix: str) -> None:
    limiter = RateLimiter(redis_client, prefix=prefix)
    key = f"{prefix}:t:ip:127.0.0.1"
    assert (await limiter.hit(key, rate_per_s=20, burst=2, cost=2)).allowed
    refused = await limiter.hit(key, rate_per_s=20, burst=2)
    assert not refused.allowed and 0 < refused.retry_after_s <= 0.05

    async def hit() -> Decision:
        return await limiter.hit(key, rate_per_s=20, burst=2)

    assert (await eventually(hit, until=lambda d: d.allowed, timeout=5)).allowed


async def test_buckets_are_separate(redis_client: aioredis.Redis, prefix: str) -> None:
    limiter = RateLimiter(redis_client, prefix=prefix)
    assert (await limiter.hit(f"{prefix}:a", rate_per_s=0.01, burst=1)).allowed
    assert not (await limiter.hit(f"{prefix}:a", rate_per_s=0.01, burst=1)).allowed
    assert (await limiter.hit(f"{prefix}:b", rate_per_s=0.01, burst=1)).allowed


async def test_concurrent_hits_never_overspend(redis_client: aioredis.Redis, prefix: str) -> None:
    limiter = RateLimiter(redis_client, prefix=prefix)
    key = f"{prefix}:race"
    decisions = await asyncio.gather(*(limiter.hit(key, rate_per_s=0.001, burst=10) for _ in range(50)))
    assert sum(d.allowed for d in decisions) == 10


async def test_actions_use_limits_with_overrides(redis_client: aioredis.Redis, prefix: str) -> None:
    limiter = RateLimiter(redis_client, {"login": Limit(rate_per_s=0.001, burst=2)}, prefix=prefix)
    assert limiter.limits["post"] == LIMITS["post"]
    results = [(await limiter.hit_action("login", "ip", "10.0.0.1")).allowed for _ in range(3)]
    assert results == [True, True, False]
    assert await redis_client.exists(f"{prefix}:login:ip:10.0.0.1")
    posts = [await limiter.hit_action("post", "user", "u1") for _ in range(LIMITS["post"].burst + 1)]
    assert [d.allowed for d in posts].count(True) == LIMITS["post"].burst
    with pytest.raises(KeyError):
        await limiter.hit_action("unknown", "user", "u1")


@pytest.mark.parametrize(("rate", "burst", "cost"), [(0, 1, 1), (1, 0, 1), (1, 2, 3), (1, 2, 0)])
async def test_bad_arguments(redis_client: aioredis.Redis, prefix: str, rate: float, burst: int, cost: int) -> None:
    with pytest.raises(ValueError):
        await RateLimiter(redis_client, prefix=prefix).hit(f"{prefix}:x", rate_per_s=rate, burst=burst, cost=cost)


def test_default_key_shape() -> None:
    assert rate_key("follow", "user", "42") == "chirp:rl:follow:user:42"
