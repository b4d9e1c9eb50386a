"""The Kafka broker and the one way events are published: keyed, with the correlation id in headers."""

from __future__ import annotations

import asyncio

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream.kafka import KafkaBroker

from chirp.logging import correlation_id
from chirp.settings import Settings
from schemas import topics
from schemas.events import Event

CORRELATION_HEADER = "correlation_id"


def make_broker(settings: Settings, **options: object) -> KafkaBroker:
    """A FastStream Kafka broker for this deployment (publishing waits for all in-sync replicas)."""
    return KafkaBroker(
        settings.bootstrap_servers,
        acks="all",
        enable_idempotence=True,
        client_id="chirp",
        logger=None,
        **options,  # type: ignore[arg-type]
    )


class Publisher:
    """Publishes events to their topic, keyed by the topic's key field; returns after Kafka acknowledged."""

    def __init__(self, broker: KafkaBroker) -> None:
        self._broker = broker

    async def publish(self, event: Event) -> None:
        cid = event.correlation_id or correlation_id()
        if cid and not event.correlation_id:
            event = event.model_copy(update={"correlation_id": cid})
        await self._broker.publish(
            event.model_dump_json().encode(),
            topic=event.topic.name,
            key=event.key.encode(),
            headers={CORRELATION_HEADER: cid, "event_type": event.type, "event_id": event.id},
        )

    async def publish_raw(self, topic: str, key: bytes | None, value: bytes, headers: dict[str, str]) -> None:
        """Publish bytes as they are (dead letters, retries of dead letters)."""
        await self._broker.publish(value, topic=topic, key=key, headers=headers)

    async def publish_many(self, events: list[Event], chunk: int = 1000) -> None:
        """Publish a batch (seeding, replays) concurrently in chunks; returns once Kafka acknowledged all."""
        for i in range(0, len(events), chunk):
            await asyncio.gather(*(self.publish(event) for event in events[i : i + chunk]))


async def ensure_topics(settings: Settings, extra: tuple[topics.Topic, ...] = ()) -> list[str]:
    """Create the truth topics (and `extra`) with their partitions and retention; returns those created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [t for t in (*topics.ALL, *extra) if t.name not in existing]
        created = []
        for topic in wanted:
            new = NewTopic(
                topic.name,
                num_partitions=topic.partitions,
                replication_factor=1,
                topic_configs={"retention.ms": str(topic.retention_ms)},
            )
            try:
                await admin.create_topics([new])
                created.append(topic.name)
            except TopicAlreadyExistsError:
                pass
        return created
    finally:
        await admin.close()
