"""Token-bucket rate limits in Redis, one bucket per action and actor (`chirp:rl:{action}:{user|ip}:{id}`).

One Lua script reads, refills, spends and writes a request's buckets (the viewer's, then the address's) in one
round trip, so concurrent gateways cannot overspend them (on a Redis Cluster, where the two buckets live in
different slots, one call each). Time comes
from Redis (`TIME`), not from the gateways, so their clock skew does not matter. A bucket expires once it would
be full again, so idle actors cost no memory.

`RateLimitMiddleware` applies them to the routes of `RULES`: a request spends from the viewer's bucket (when
logged in) and from its client address's bucket, and is refused with 429 and `Retry-After` if either is empty.
The script rides on the pipeline that checks the viewer's session (`gateway.auth.current.viewer_and`), so a
limited write costs one Redis round trip before its endpoint, not two.
The client address is the ASGI `client` host: behind a proxy, run uvicorn with `--proxy-headers` and
`--forwarded-allow-ips` so it is the real one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from chirp.redis_client import evalsha_of
from gateway.auth.current import viewer, viewer_and
from gateway.errors import ApiError, JSONResponse, error_body

if TYPE_CHECKING:
    from chirp.settings import Settings

PREFIX = "chirp:rl"

# KEYS: buckets, spent in order.  ARGV: cost, then rate per second and burst of each bucket.
# Stops at the first bucket short of `cost` (later ones are not spent). Returns {allowed 0|1, retry after ms,
# tokens left} of the refusing bucket, or of the last one.
_TOKEN_BUCKETS = """
local cost = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local allowed, retry_ms, left = 1, 0, 0
for i, key in ipairs(KEYS) do
  local rate = tonumber(ARGV[2 * i])
  local burst = tonumber(ARGV[2 * i + 1])
  local state = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens = tonumber(state[1]) or burst
  local ts = tonumber(state[2]) or now
  tokens = math.min(burst, tokens + math.max(0, now - ts) * rate / 1000)
  if tokens >= cost then
    tokens = tokens - cost
  else
    allowed, retry_ms = 0, math.ceil((cost - tokens) * 1000 / rate)
  end
  redis.call('HSET', key, 'tokens', string.format('%.6f', tokens), 'ts', now)
  redis.call('PEXPIRE', key, math.ceil((burst - tokens) * 1000 / rate) + 1000)
  left = math.floor(tokens)
  if allowed == 0 then
    break
  end
end
return {allowed, retry_ms, left}
"""


def _decision(reply: Any) -> Decision:
    allowed, retry_ms, remaining = reply
    return Decision(allowed=bool(allowed), retry_after_s=int(retry_ms) / 1000, remaining=int(remaining))


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
    "follow": Limit(rate_per_s=1 / 3, burst=20),
    "login": Limit(rate_per_s=1 / 12, burst=5),  # per IP: 5 at once, then 5 a minute
    "report": Limit(rate_per_s=1 / 60, burst=10),  # 10 at once, then one a minute
}

# One address may hide many people (offices, mobile carriers): its buckets are wider than one user's. Logins are
# mostly anonymous, so the address is what limits them.
IP_LIMITS: Mapping[str, Limit] = {
    "post": Limit(rate_per_s=20 / 6, burst=200),
    "follow": Limit(rate_per_s=20 / 3, burst=400),
    "login": Limit(rate_per_s=1 / 12, burst=5),
    "report": Limit(rate_per_s=20 / 60, burst=200),
}

DEV_SCALE = 1000.0  # dev and test: the whole test suite logs everyone in and posts from 127.0.0.1

# (methods, path) -> action. Paths are matched in full.
RULES: tuple[tuple[frozenset[str], re.Pattern[str], str], ...] = (
    (frozenset({"POST"}), re.compile(r"/api/posts/?"), "post"),
    (frozenset({"PATCH"}), re.compile(r"/api/posts/[^/]+/?"), "post"),  # an edit costs what a post does
    (frozenset({"POST", "DELETE"}), re.compile(r"/api/users/[^/]+/follow/?"), "follow"),
    (frozenset({"POST"}), re.compile(r"/api/reports/?"), "report"),
    (frozenset({"POST"}), re.compile(r"/auth/dev-login"), "login"),
    (frozenset({"GET"}), re.compile(r"/auth/github/login"), "login"),
    (frozenset({"GET"}), re.compile(r"/auth/github/callback"), "login"),
    (frozenset({"POST"}), re.compile(r"/auth/refresh"), "login"),
)


def rate_key(action: str, kind: Literal["user", "ip"], actor: str, *, prefix: str = PREFIX) -> str:
    """The bucket key for `actor` (a user id or a client IP) doing `action`."""
    return f"{prefix}:{action}:{kind}:{actor}"


class RateLimiter:
    """Spend tokens from Redis buckets; `limits` overrides entries of `LIMITS`."""

    def __init__(self, redis: Redis, limits: Mapping[str, Limit] | None = None, *, prefix: str = PREFIX) -> None:
        self._script = redis.register_script(_TOKEN_BUCKETS)
        self._one_key_a_call = isinstance(redis, RedisCluster)  # a request's buckets live in different slots
        self.limits: dict[str, Limit] = {**LIMITS, **(limits or {})}
        self.prefix = prefix

    async def hit(self, key: str, *, rate_per_s: float, burst: int, cost: int = 1) -> Decision:
        """Spend `cost` tokens from the bucket at `key` if it holds that many."""
        return await self.hit_all([(key, Limit(rate_per_s, burst))], cost=cost)

    @staticmethod
    def _args(buckets: Sequence[tuple[str, Limit]], cost: int) -> list[str | int]:
        args: list[str | int] = [cost]
        for _, limit in buckets:
            if limit.rate_per_s <= 0 or limit.burst < 1 or not 0 < cost <= limit.burst:
                raise ValueError("need rate_per_s > 0, burst >= 1 and 0 < cost <= burst")
            args += [repr(limit.rate_per_s), limit.burst]
        return args

    async def hit_all(self, buckets: Sequence[tuple[str, Limit]], *, cost: int = 1) -> Decision:
        """Spend `cost` tokens from each bucket in turn, in one round trip, stopping at the first that lacks them
        (its refusal is the decision; the buckets after it are not spent)."""
        args = self._args(buckets, cost)
        if self._one_key_a_call and len(buckets) > 1:
            for i, (key, _) in enumerate(buckets):
                decision = await self._spend([key], [cost, *args[1 + 2 * i : 3 + 2 * i]])
                if not decision.allowed:
                    break
            return decision
        return await self._spend([key for key, _ in buckets], args)

    async def _spend(self, keys: list[str], args: list[str | int]) -> Decision:
        return _decision(await self._script(keys=keys, args=args))

    @property
    def one_call_for_all(self) -> bool:
        """Whether a request's buckets are spent by one script call (not on a cluster: they live in different
        slots), which can then ride on another pipeline (`queue`)."""
        return not self._one_key_a_call

    @property
    def scripts(self) -> tuple[AsyncScript]:
        return (self._script,)

    def queue(self, pipe: Pipeline, buckets: Sequence[tuple[str, Limit]], *, cost: int = 1) -> None:
        """Queue `hit_all(buckets)` on `pipe` (`chirp.redis_client.pipelined`); `decision` reads its reply."""
        evalsha_of(pipe, self._script, [key for key, _ in buckets], self._args(buckets, cost))

    @staticmethod
    def decision(reply: object) -> Decision:
        if isinstance(reply, Exception):
            raise reply
        return _decision(reply)

    async def hit_action(self, action: str, kind: Literal["user", "ip"], actor: str, *, cost: int = 1) -> Decision:
        """Spend from `actor`'s bucket for `action` under the configured limit."""
        limit = self.limits[action]
        key = rate_key(action, kind, actor, prefix=self.prefix)
        return await self.hit(key, rate_per_s=limit.rate_per_s, burst=limit.burst, cost=cost)


_RULES_BY_METHOD = {
    method: tuple((pattern, action) for methods, pattern, action in RULES if method in methods)
    for method in frozenset().union(*(methods for methods, _, _ in RULES))
}


def action_for(method: str, path: str) -> str | None:
    """The rate-limited action a request performs, if any."""
    for pattern, action in _RULES_BY_METHOD.get(method, ()):
        if pattern.fullmatch(path):
            return action
    return None


def _scaled(limit: Limit, scale: float) -> Limit:
    return Limit(rate_per_s=limit.rate_per_s * scale, burst=max(1, round(limit.burst * scale)))


def limits_from(settings: Settings) -> tuple[dict[str, Limit], dict[str, Limit]]:
    """The (per user, per address) limits: built-in tables, then the settings' overrides, times the scale."""
    scale = settings.ratelimit_scale
    if scale is None:
        scale = 1.0 if settings.env == "prod" else DEV_SCALE
    user = {**LIMITS, **{a: Limit(*v) for a, v in settings.ratelimits.items()}}
    ip = {**IP_LIMITS, **{a: Limit(*v) for a, v in settings.ratelimits_ip.items()}}
    return {a: _scaled(v, scale) for a, v in user.items()}, {a: _scaled(v, scale) for a, v in ip.items()}


class RateLimitMiddleware:
    """Pure ASGI: 429 with `Retry-After` once the viewer's or the address's bucket for the action is empty."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._limits: tuple[int, dict[str, Limit], dict[str, Limit]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = await self.refusal(scope) if scope["type"] == "http" else None
        if refusal is None:
            return await self.app(scope, receive, send)
        await refusal(scope, receive, send)

    async def refusal(self, scope: Scope) -> Response | None:
        """The 429 for an HTTP request over its limits; None when it may go on (most routes: no I/O)."""
        action = action_for(scope["method"], scope["path"])
        if action is None:
            return None
        refused = await self._check(scope, action)
        if refused is None:
            return None
        seconds = refused.retry_after_header
        body = error_body("rate_limited", f"Too many requests; try again in {seconds} s.")
        return JSONResponse(body, 429, headers={"Retry-After": seconds})

    async def _check(self, scope: Scope, action: str) -> Decision | None:
        """The refusal, or None when both buckets had a token."""

        state = scope["app"].state.chirp
        user_limits, ip_limits = self._limits_for(state.settings)
        limiter: RateLimiter = state.limiter
        # Outside prod the limits are scaled, so those buckets live apart: a dev gateway and a prod-like one
        # sharing a Redis (the test suite) must not clamp each other's buckets to their own burst.
        prefix = limiter.prefix if state.settings.env == "prod" else f"{limiter.prefix}:{state.settings.env}"
        client = scope.get("client")
        address = client[0] if client else "unknown"

        def buckets_of(user_id: str | None) -> list[tuple[str, Limit]]:
            """The viewer's bucket, then the address's: one script call spends both."""
            buckets = []
            if user_id is not None and action in user_limits:
                buckets.append((rate_key(action, "user", user_id, prefix=prefix), user_limits[action]))
            if action in ip_limits:
                buckets.append((rate_key(action, "ip", address, prefix=prefix), ip_limits[action]))
            return buckets

        request = Request(scope)
        if limiter.one_call_for_all:  # the spending rides on the session check's round trip
            spent: list[bool] = []

            def queue(pipe: Pipeline, user_id: str | None) -> None:
                if buckets := buckets_of(user_id):
                    limiter.queue(pipe, buckets)
                    spent.append(True)

            _, replies = await viewer_and(request, queue, limiter.scripts)  # the viewer is kept for the endpoint
            decision = limiter.decision(replies[0]) if spent else None
        else:
            try:
                who = await viewer(request)  # cached in the scope for the endpoint
            except ApiError:
                who = None  # a bad token: the endpoint answers 401; the address still pays
            buckets = buckets_of(who.user_id if who is not None else None)
            decision = await limiter.hit_all(buckets) if buckets else None
        return None if decision is None or decision.allowed else decision

    def _limits_for(self, settings: Settings) -> tuple[dict[str, Limit], dict[str, Limit]]:
        if self._limits is None or self._limits[0] != id(settings):
            self._limits = (id(settings), *limits_from(settings))
        return self._limits[1], self._limits[2]
