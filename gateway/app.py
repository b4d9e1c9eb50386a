"""The gateway: `create_app(settings)` builds the Starlette app and its shared clients (the composition root)."""

from __future__ import annotations

import contextlib
import importlib
import pkgutil
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute
from starlette.types import ASGIApp

import gateway.routes as routes_package
from chirp.heap import settle_after_startup
from chirp.redis_client import HiredisPacking, RoundTrips
from chirp.redis_client import connect as redis_connect
from chirp.settings import Settings
from gateway.auth.keys import KeyRing
from gateway.auth.sessions import SessionStore
from gateway.auth.tokens import VerifiedTokens
from gateway.errors import ErrorHandlers
from gateway.interaction_cache import InteractionCache
from gateway.middleware import PerRequest
from gateway.one_write import OneWrite
from gateway.pages.errors import error_page
from gateway.pages.live import Relay
from gateway.pages.security import HEADERS
from gateway.post_waits import PostWaits
from gateway.ratelimit import RateLimiter
from gateway.router import IndexedRouter
from gateway.state import State
from producers.broker import Publisher, ensure_topics, make_broker, stop_within
from store.accounts import PostgresAccounts
from store.backends import interactions_read_model, posts_read_model, users_read_model
from store.export import PostgresAccountExport
from store.keys import PgKeyStore
from store.postgres import connect
from store.relations import RedisRelations
from store.reports import PostgresReports
from store.search import PLAN_ONCE, PostgresSearch
from store.threads import Threads
from store.timelines import CachedPosts, PostgresTimelineSource, RedisTimelines

POST_CACHE_TTL_S = 2.0  # how late a reply count, a rename or a re-render may show in timelines


def routes() -> list[BaseRoute]:
    """Every `routes` list of the modules in `gateway/routes/` (one module per resource)."""
    found: list[BaseRoute] = []
    # /healthz and /readyz first: exact paths that probes call most, matched before the router scans the rest
    for info in sorted(pkgutil.iter_modules(routes_package.__path__), key=lambda m: (m.name != "health", m.name)):
        found.extend(importlib.import_module(f"gateway.routes.{info.name}").routes)
    return found


class Gateway(Starlette):
    chirp: State | None = None  # set by the lifespan, with `state.chirp`: what `gateway.state.state_of` reads

    def build_middleware_stack(self) -> ASGIApp:
        # Outside Starlette's own error middleware, so that it sees the server's `send` (gateway/one_write.py).
        return OneWrite(super().build_middleware_stack())


def create_app(settings: Settings) -> Starlette:
    """A gateway app for `settings`; the lifespan connects the broker (publish only), Redis and PostgreSQL."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        broker = make_broker(settings)
        await broker.connect()
        await ensure_topics(settings)
        # Stores that are down or do not answer fail a request within seconds (then 503), not after minutes.
        timeouts: dict[str, Any] = {
            "timeout": settings.store_connect_timeout_s,
            "command_timeout": settings.store_command_timeout_s,
        }
        pg = await connect(settings, **timeouts)
        search_pg = await connect(settings, migrate=False, server_settings=PLAN_ONCE, **timeouts)
        redis_options: dict[str, Any] = {
            "decode_responses": True,
            "socket_connect_timeout": settings.store_connect_timeout_s,
            "socket_timeout": settings.store_command_timeout_s,
            "retry": Retry(NoBackoff(), 1),  # one reconnect (a restarted Redis), not seconds of backoff per command
        }
        if settings.redis_cluster:  # 200 connections per node, each node's pool its own
            redis_client = redis_connect(settings, max_connections=200, **redis_options)
        else:
            pool = aioredis.BlockingConnectionPool.from_url(
                settings.redis_url,
                max_connections=200,
                timeout=5,  # waits for a free connection under load instead of failing the request
                connection_class=HiredisPacking,
                **redis_options,
            )
            redis_client = aioredis.Redis(connection_pool=pool)
        posts = posts_read_model(settings, pg)
        interactions = interactions_read_model(settings, pg, posts)
        app.state.chirp = state = State(
            settings,
            broker,
            Publisher(broker, deadline_s=settings.publish_timeout_s, keys=PgKeyStore.for_sealing(settings, pg)),
            redis_client,
            RoundTrips(redis_client),
            pg,
            keys=KeyRing.from_settings(settings),
            sessions=SessionStore(redis_client, settings.refresh_token_days),
            limiter=RateLimiter(redis_client),
            accounts=PostgresAccounts(pg),
            posts=posts,
            users=users_read_model(settings, pg, posts),
            interactions=interactions,
            interaction_cache=InteractionCache(redis_client, interactions),
            relations=RedisRelations(redis_client),
            reports=PostgresReports(pg),
            export=PostgresAccountExport(pg),
            search=PostgresSearch(search_pg),
            threads=Threads(posts),
            timelines=RedisTimelines(redis_client, settings.timeline_length),
            timeline_posts=CachedPosts(PostgresTimelineSource(pg, posts), POST_CACHE_TTL_S),
            post_waits=PostWaits(redis_client),
            live_relay=Relay(settings, counts=interactions.counts),
            verified_tokens=VerifiedTokens(),
        )
        if isinstance(app, Gateway):
            app.chirp = state
        settle_after_startup()
        try:
            yield
        finally:
            await state.interaction_cache.close()
            await state.round_trips.aclose()
            await stop_within(broker, timeout_s=5)
            await redis_client.aclose()
            await pg.close()
            await search_pg.close()

    errors = ErrorHandlers(error_page, HEADERS)  # pages in the site's layout for browsers, JSON for the API
    app = Gateway(
        routes=routes(),
        lifespan=lifespan,
        exception_handlers=errors.by_class(),
        middleware=[
            # Correlation id, security headers, body bounds, rate limits, 503s and metrics: one pass.
            Middleware(
                PerRequest,
                on_error=errors.api_error,
                max_body_bytes=settings.http_max_body_bytes,
                body_timeout_s=settings.http_body_timeout_s,
                retry_after_s=settings.unavailable_retry_after_s,
            )
        ],
    )
    app.router = IndexedRouter(app.router.routes, lifespan=lifespan)  # fixed paths found without a scan
    return app
