"""What the gateway shares across requests: clients and read models, built once by `gateway.app.create_app` (the
composition root) and closed by its lifespan. Routes use the read models through their ports (Protocols)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import asyncpg
import redis.asyncio as aioredis
from faststream.kafka import KafkaBroker
from starlette.requests import Request

from chirp.redis_client import RoundTrips
from chirp.settings import Settings
from gateway.interaction_cache import InteractionCache
from gateway.post_waits import PostWaits
from producers.broker import Publisher
from store.accounts import Accounts
from store.export import AccountExport
from store.interactions import InteractionsReadModel
from store.posts import PostReadModel
from store.relations import RelationsReadModel
from store.reports import ReportsReadModel
from store.search import SearchIndex
from store.threads import Threads
from store.timelines import CachedPosts, RedisTimelines
from store.users import UsersReadModel

if TYPE_CHECKING:  # these modules read this state: they are named here, built by the composition root
    from gateway.auth.keys import KeyRing
    from gateway.auth.sessions import SessionStore
    from gateway.auth.tokens import VerifiedTokens
    from gateway.pages.live import Relay
    from gateway.ratelimit import RateLimiter


@dataclass
class State:
    settings: Settings
    broker: KafkaBroker
    publisher: Publisher
    redis: aioredis.Redis
    round_trips: RoundTrips  # the read path's pipelines on `redis` (the session check and what rides with it)
    pg: asyncpg.Pool
    keys: KeyRing
    sessions: SessionStore
    limiter: RateLimiter
    accounts: Accounts  # logins and quarantined handles (not a read model)
    # Read models.
    posts: PostReadModel
    users: UsersReadModel
    interactions: InteractionsReadModel
    relations: RelationsReadModel
    reports: ReportsReadModel
    export: AccountExport  # a user's own rows for /api/me/export
    interaction_cache: InteractionCache  # `interactions` kept briefly for the home timeline
    search: SearchIndex  # on connections that plan search statements once (store/search.py)
    threads: Threads  # conversations, on `posts`
    timelines: RedisTimelines
    timeline_posts: CachedPosts
    # This process's subscribers to the posts channels: writes waiting to be visible, and the live streams.
    post_waits: PostWaits
    live_relay: Relay
    verified_tokens: VerifiedTokens
    trending_cache: dict[str, Any] = field(default_factory=dict)  # window → the ranking as last read
    background: set[asyncio.Task[None]] = field(default_factory=set)  # tasks a response does not wait for


def state_of(request: Request) -> State:
    """The app's state: the gateway's own attribute (`gateway.app.Gateway.chirp`, a plain read), else
    `app.state.chirp` (other apps: Starlette's `State` finds it only after a failed attribute lookup, an exception
    raised and caught, a few times per request)."""
    app = request.scope["app"]
    found: State | None = getattr(app, "chirp", None)
    return found if found is not None else app.state.chirp
