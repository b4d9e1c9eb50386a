"""What every test run starts from and leaves behind on the shared services.

- Start: an empty test database and Redis database, and the consumers' test groups at the end of their topics.
- End: the topics and consumer groups the run created (probes, scratch topics, their dead letters, named with
  `tests.scratch.scratch_id`) are deleted, so runs do not pile up partitions in the broker. Only names carrying
  this run's id go: the system's own topics and groups, and anything someone else created meanwhile, stay.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass

import asyncpg
from aiokafka.errors import KafkaError

from chirp import redis_client
from chirp.settings import Settings
from consumers.runtime import all_consumers
from ops import _kafka
from producers.broker import ensure_topics
from tests.scratch import MARK


@dataclass(frozen=True)
class KafkaNames:
    topics: frozenset[str]
    groups: frozenset[str]


async def kafka_names(settings: Settings) -> KafkaNames:
    async with _kafka.admin(settings) as admin:
        return KafkaNames(frozenset(await admin.list_topics()), frozenset(await _kafka.groups(admin)))


async def start_fresh(settings: Settings) -> KafkaNames:
    """Empty the test database and Redis database, position the test groups at the end; the names there were."""
    conn = await asyncpg.connect(settings.postgres_dsn("postgres"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{settings.postgres_db}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{settings.postgres_db}" OWNER "{settings.postgres_user}"')
    finally:
        await conn.close()
    async with redis_client.connect(settings) as client:  # on a cluster: every master
        await client.flushdb()
    await ensure_topics(settings)
    for consumer in all_consumers():
        async with _kafka.reader(settings, group_id=settings.group(consumer.name)) as kafka:
            if tps := await _kafka.partitions(kafka, consumer.handlers):
                kafka.assign(tps)
                await kafka.commit(await kafka.end_offsets(tps))
    return await kafka_names(settings)


async def remove_created(settings: Settings, before: KafkaNames) -> None:
    """Delete the topics and groups this run created since `before` (their names carry its id)."""
    now = await kafka_names(settings)
    async with _kafka.admin(settings) as admin:
        for group in sorted(g for g in now.groups - before.groups if MARK in g):
            with suppress(KafkaError):  # one still has members: the next run's clean-up takes it
                await _kafka.delete_group(admin, group)
        if scratch := sorted(t for t in now.topics - before.topics if MARK in t):
            with suppress(KafkaError):
                await admin.delete_topics(scratch)
