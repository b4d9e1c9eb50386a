"""Install and run the local Kafka, Redis and PostgreSQL that Chirp needs, idempotently."""

from __future__ import annotations

from chirp.settings import Settings
from ops.services import kafka, postgres, redis, redis_cluster
from ops.services._util import ServiceError

__all__ = ["ServiceError", "down", "status", "up"]


def up(settings: Settings) -> None:
    """Install what is missing, start what is not running and wait until every service is ready."""
    settings.home.mkdir(parents=True, exist_ok=True)
    postgres.up(settings)
    if settings.redis_cluster:
        redis_cluster.up(settings)
    else:
        redis.up(settings)
    kafka.up(settings)


def down(settings: Settings) -> None:
    """Stop the services we started."""
    kafka.down(settings)
    if settings.redis_cluster:
        redis_cluster.down(settings)
    else:
        redis.down(settings)
    postgres.down(settings)


def status(settings: Settings) -> dict[str, bool]:
    """Which services answer on their ports."""
    return {
        "kafka": kafka.status(settings),
        "redis": redis_cluster.status(settings) if settings.redis_cluster else redis.status(settings),
        "postgres": postgres.status(settings),
    }
