"""The clients the gateway shares across requests, opened and closed by the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from faststream.kafka import KafkaBroker
from starlette.requests import Request

from chirp.settings import Settings
from gateway.auth.keys import KeyRing
from gateway.auth.sessions import SessionStore
from gateway.auth.tokens import VerifiedTokens
from gateway.ratelimit import RateLimiter
from producers.broker import Publisher


@dataclass
class State:
    settings: Settings
    broker: KafkaBroker
    publisher: Publisher
    redis: aioredis.Redis
    pg: asyncpg.Pool
    keys: KeyRing
    sessions: SessionStore
    limiter: RateLimiter
    search_pg: asyncpg.Pool  # the same database, connections that plan search statements once (store/search.py)
    verified_tokens: VerifiedTokens = field(default_factory=VerifiedTokens)
    extras: dict[str, Any] = field(default_factory=dict)


def state_of(request: Request) -> State:
    return request.app.state.chirp
