"""Token-bucket rate limits in Redis, one bucket per action and actor (`chirp:rl:{action}:{user|ip}:{id}`).

One Lua script reads, refills, spends and writes the bucket, so concurrent gateways cannot overspend it. Time comes
from Redis (`TIME`), not from the gateways, so their clock skew does not matter. A bucket expires once it would
be full again, so idle actors cost no memory.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from redis.asyncio import Redis

PREFIX = "chirp:rl"

# KEYS: bucket.  ARGV: rate per second, burst, cost.  Returns {allowed 0|1, retry after ms, tokens left}.
_TOKEN_BUCKET = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate / 1000)
local allowed, retry_ms = 0, 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  retry_ms = math.ceil((cost - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) * 1000 / rate) + 1000)
return {allowed, retry_ms, math.floor(tokens)}
"""


@dataclass(frozen=True)
class Limit:
    rate_per_s: float
    burst: int


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after_s: float
    remaining: int

    @property
    def retry_after_header(self) -> str:
        """The `Retry-After` value: whole seconds, rounded up."""
        return str(math.ceil(self.retry_after_s))


LIMITS: Mapping[str, Limit] = {
    "post": Limit(rate_per_s=1 / 6, burst=10),  # 10 at once, then one every 6 s
    "like": Limit(rate_per_s=1, burst=30),
    "follow": Limit(rate_per_s=1 / 3, burst=20),
    "login": Limit(rate_per_s=1 / 12, burst=5),  # per IP: 5 at once, then 5 a minute
    "refresh": Limit(rate_per_s=1 / 30, burst=10),
}


def rate_key(action: str, kind: Literal["user", "ip"], actor: str, *, prefix: str = PREFIX) -> str:
    """The bucket key for `actor` (a user id or a client IP) doing `action`."""
    return f"{prefix}:{action}:{kind}:{actor}"


class RateLimiter:
    """Spend tokens from Redis buckets; `limits` overrides entries of `LIMITS`."""

    def __init__(self, redis: Redis, limits: Mapping[str, Limit] | None = None, *, prefix: str = PREFIX) -> None:
        self._script = redis.register_script(_TOKEN_BUCKET)
        self.limits: dict[str, Limit] = {**LIMITS, **(limits or {})}
        self.prefix = prefix

    async def hit(self, key: str, *, rate_per_s: float, burst: int, cost: int = 1) -> Decision:
        """Spend `cost` tokens from the bucket at `key` if it holds that many."""
        if rate_per_s <= 0 or burst < 1 or not 0 < cost <= burst:
            raise ValueError("need rate_per_s > 0, burst >= 1 and 0 < cost <= burst")
        allowed, retry_ms, remaining = await self._script(keys=[key], args=[repr(rate_per_s), burst, cost])
        return Decision(allowed=bool(allowed), retry_after_s=int(retry_ms) / 1000, remaining=int(remaining))

    async def hit_action(self, action: str, kind: Literal["user", "ip"], actor: str, *, cost: int = 1) -> Decision:
        """Spend from `actor`'s bucket for `action` under the configured limit."""
        limit = self.limits[action]
        key = rate_key(action, kind, actor, prefix=self.prefix)
        return await self.hit(key, rate_per_s=limit.rate_per_s, burst=limit.burst, cost=cost)
