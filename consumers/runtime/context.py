"""The consumers' composition root: the clients and adapters a handler receives, typed, built once per process."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import asyncpg
import redis.asyncio as aioredis
from faststream.kafka import KafkaBroker

from chirp import redis_client
from chirp.settings import Settings
from producers.broker import Publisher
from store.backends import posts_read_model
from store.interactions import PostgresInteractions
from store.keys import PgKeyStore
from store.posts import PostReadModel
from store.relations import RedisRelations
from store.reports import PostgresReports
from store.search import PostgresSearch
from store.timelines import PostgresTimelineSource, RedisTimelines
from store.trending import DEFAULT_PREFIX, RedisTrending
from store.users import PostgresUsersReadModel


@dataclass
class Context:
    """What a handler receives: the settings, the store pool, Redis, a publisher, and the read models' adapters
    that are not per-consumer SQL (built on first use, once per context: a replay's context builds them on its
    shadow pool and client)."""

    settings: Settings
    pg: asyncpg.Pool
    redis: aioredis.Redis
    publisher: Publisher
    trending_prefix: str = DEFAULT_PREFIX  # where trending's keys live (a test builds its own elsewhere)

    @cached_property
    def keys(self) -> PgKeyStore:
        """The erasure key store: the publisher's (it seals what this process publishes), else one on `pg`."""
        own = getattr(self.publisher, "keys", None)
        return own if isinstance(own, PgKeyStore) else PgKeyStore.from_settings(self.settings, self.pg)

    @cached_property
    def posts(self) -> PostReadModel:
        """The posts read model on the configured store (`CHIRP_STORE`, store/backends.py)."""
        return posts_read_model(self.settings, self.pg)

    @cached_property
    def users(self) -> PostgresUsersReadModel:
        return PostgresUsersReadModel(self.pg)

    @cached_property
    def search(self) -> PostgresSearch:
        return PostgresSearch(self.pg)

    @cached_property
    def interactions(self) -> PostgresInteractions:
        return PostgresInteractions(self.pg)

    @cached_property
    def reports(self) -> PostgresReports:
        return PostgresReports(self.pg)

    @cached_property
    def relations(self) -> RedisRelations:
        return RedisRelations(self.redis)

    @cached_property
    def timelines(self) -> RedisTimelines:
        return RedisTimelines(self.redis, self.settings.timeline_length)

    @cached_property
    def timeline_source(self) -> PostgresTimelineSource:
        """Follows and users from PostgreSQL, posts from `posts` (on the configured store)."""
        return PostgresTimelineSource(self.pg, self.posts)

    @cached_property
    def trending(self) -> RedisTrending:
        return RedisTrending(self.redis, self.trending_prefix)

    @property
    def announcing(self) -> bool:
        """Whether Redis PUBLISH reaches subscribers. It does not while a replay builds a shadow copy (see
        ops/replay.py), so a handler can skip preparing announcements nobody receives."""
        return bool(getattr(self.redis, "announcing", True))


async def open_context(settings: Settings, broker: KafkaBroker) -> Context:
    from store.postgres import connect

    pg = await connect(settings)
    cache = redis_client.connect(settings, decode_responses=True)
    publisher = Publisher(broker, keys=PgKeyStore.from_settings(settings, pg))
    return Context(settings=settings, pg=pg, redis=cache, publisher=publisher)


async def close_context(ctx: Context) -> None:
    await ctx.pg.close()
    await ctx.redis.aclose()
