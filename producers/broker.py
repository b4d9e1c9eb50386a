"""The Kafka broker and the one way events are published: keyed, with the correlation id in headers."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, KafkaTimeoutError, RequestTimedOutError, TopicAlreadyExistsError
from faststream.kafka import KafkaBroker

from chirp.kafka_admin import topic_replication
from chirp.logging import correlation_id
from chirp.settings import Settings
from producers.sealing import KeyStore, seal
from schemas import topics
from schemas.events import Event

CORRELATION_HEADER = "correlation_id"


def make_broker(settings: Settings, **options: object) -> KafkaBroker:
    """A FastStream Kafka broker for this deployment (publishing waits for all in-sync replicas)."""
    return KafkaBroker(
        settings.bootstrap_servers.split(","),  # FastStream takes one string as one address
        acks="all",
        enable_idempotence=True,
        client_id="chirp",
        logger=None,
        **options,  # type: ignore[arg-type]
    )


class PublishFailed(Exception):
    """Kafka did not acknowledge an event within the deadline, or refused it.

    `may_have_been_published` is True when the event had left for Kafka (it sits in the producer's queue or was
    sent) and may still be written; False when it never got that far.
    """

    def __init__(self, message: str, *, may_have_been_published: bool) -> None:
        super().__init__(message)
        self.may_have_been_published = may_have_been_published


# Errors after which Kafka may still have written the event (the request went out; no answer came back).
_AMBIGUOUS = (KafkaTimeoutError, RequestTimedOutError)


class Publisher:
    """Publishes events to their topic, keyed by the topic's key field; returns after Kafka acknowledged.

    With `deadline_s` a publish that is not acknowledged in time raises `PublishFailed` instead of waiting for
    the producer's own retries (tens of seconds when Kafka does not answer). With `keys` personal fields are sealed
    with erasure keys from that store (producers/sealing.py); without, events are written in clear.
    """

    def __init__(self, broker: KafkaBroker, *, deadline_s: float | None = None, keys: KeyStore | None = None) -> None:
        self._broker = broker
        self._deadline_s = deadline_s
        self.keys = keys

    async def publish(self, event: Event) -> None:
        cid = event.correlation_id or correlation_id()
        if cid and not event.correlation_id:
            event = event.model_copy(update={"correlation_id": cid})
        value, erasure = await seal(event, self.keys)
        headers = {CORRELATION_HEADER: cid, "event_type": event.type, "event_id": event.id, **erasure}
        if self._deadline_s is None:
            await self._broker.publish(value, topic=event.topic.name, key=event.key.encode(), headers=headers)
        else:
            await self._publish_by_deadline(event.topic.name, event.key.encode(), value, headers, self._deadline_s)

    async def _publish_by_deadline(
        self, topic: str, key: bytes, value: bytes, headers: dict[str, str], deadline_s: float
    ) -> None:
        """Queue the record in the producer, then wait for its acknowledgement, both within `deadline_s`."""
        loop = asyncio.get_running_loop()
        until = loop.time() + deadline_s
        try:
            async with asyncio.timeout_at(until):  # metadata and room in the producer's queue
                sent = await self._broker.publish(value, topic=topic, key=key, headers=headers, no_confirm=True)
        except (TimeoutError, KafkaError) as exc:
            raise PublishFailed(f"Kafka did not take the event: {exc!r}", may_have_been_published=False) from exc
        done, _ = await asyncio.wait({sent}, timeout=max(0.0, until - loop.time()))  # never cancels the record
        if not done:
            sent.add_done_callback(lambda f: f.cancelled() or f.exception())  # its late failure is not logged
            raise PublishFailed("Kafka did not acknowledge the event in time", may_have_been_published=True)
        error = sent.exception()
        if error is not None:
            ambiguous = isinstance(error, _AMBIGUOUS)
            raise PublishFailed(f"Kafka refused the event: {error!r}", may_have_been_published=ambiguous) from error

    async def publish_raw(self, topic: str, key: bytes | None, value: bytes, headers: dict[str, str]) -> None:
        """Publish bytes as they are (dead letters, retries of dead letters)."""
        await self._broker.publish(value, topic=topic, key=key, headers=headers)

    async def publish_many(self, events: list[Event], chunk: int = 1000) -> None:
        """Publish a batch (seeding, replays) concurrently in chunks; returns once Kafka acknowledged all."""
        for i in range(0, len(events), chunk):
            await asyncio.gather(*(self.publish(event) for event in events[i : i + chunk]))


async def stop_within(broker: KafkaBroker, timeout_s: float) -> None:
    """Stop `broker`, waiting at most `timeout_s` for records Kafka has not acknowledged yet.

    aiokafka retries a record without end while its partition's leader is known but down, and its `stop()`
    waits for them all: with Kafka dead a stopping gateway would hang. Those records' requests were already
    answered 503 (`may_have_been_published`), so after the timeout they are dropped and the producer closed.
    """
    try:
        async with asyncio.timeout(timeout_s):
            await broker.stop()
    except TimeoutError:
        producer: AIOKafkaProducer | None = getattr(
            getattr(broker.config.producer, "_producer", None), "producer", None
        )
        if producer is not None:
            await producer._sender.close()
            await producer.client.close()


async def ensure_topics(settings: Settings, extra: tuple[topics.Topic, ...] = ()) -> list[str]:
    """Create the truth topics (and `extra`) with their partitions, replication and retention; returns those
    created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [t for t in (*topics.ALL, *extra) if t.name not in existing]
        factor, min_isr = await topic_replication(admin) if wanted else (1, 1)
        created = []
        for topic in wanted:
            new = NewTopic(
                topic.name,
                num_partitions=topic.partitions,
                replication_factor=factor,
                topic_configs={"retention.ms": str(topic.retention_ms), "min.insync.replicas": str(min_isr)},
            )
            try:
                await admin.create_topics([new])
                created.append(topic.name)
            except TopicAlreadyExistsError:
                pass
        return created
    finally:
        await admin.close()
