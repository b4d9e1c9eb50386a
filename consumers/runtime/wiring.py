"""FastStream wiring: one batch subscriber (consumer group, manual acks) per consumer, and the process around them."""

from __future__ import annotations

import asyncio
from itertools import chain
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from faststream import AckPolicy, FastStream
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from chirp.heap import settle_after_startup
from chirp.logging import get_logger
from chirp.settings import Settings
from consumers.runtime.committer import Committer, earliest
from consumers.runtime.context import Context, close_context, open_context
from consumers.runtime.declaration import Consumer
from consumers.runtime.lease import Lease
from consumers.runtime.metrics import update_lag
from consumers.runtime.outages import ShuttingDown
from consumers.runtime.policy import Runner
from producers.broker import ensure_topics, make_broker

log = get_logger("chirp.consumer")


async def _records_only(msg: Any) -> None:
    """Skip FastStream's per-message body decoding: the runner decodes the raw records itself."""
    return None


def poll_without_pause(subscriber: Any) -> None:
    """Make a FastStream batch subscriber poll again as soon as a poll finds nothing. FastStream sleeps
    `batch_timeout_ms` after an empty poll, on top of the poll's own wait, so an event arriving during that sleep
    waited up to that long; aiokafka's `getmany` already waits for records and returns as soon as some arrive."""

    async def get_msg(kafka: AIOKafkaConsumer) -> tuple[ConsumerRecord, ...]:
        found = await kafka.getmany(timeout_ms=subscriber.batch_timeout_ms, max_records=subscriber.max_records)
        return tuple(chain.from_iterable(found.values()))

    subscriber.get_msg = get_msg  # FastStream's consume loop calls `self.get_msg(consumer)`


def subscribe(broker: KafkaBroker, consumer: Consumer, ctx: Context, stopping: asyncio.Event) -> Committer:
    """Attach one consumer group to the broker as a FastStream batch subscriber with manual acks."""
    runner = Runner(consumer, ctx, stopping)
    committer = Committer()
    settings = ctx.settings

    async def records_only(records: tuple[ConsumerRecord, ...]) -> KafkaMessage:
        """FastStream's own parser decodes every record's headers; the runner reads the raw records itself."""
        kafka = subscriber.consumer
        assert kafka is not None, "FastStream parses only for a started subscriber"
        return KafkaMessage(raw_message=records, body=b"", consumer=kafka)

    subscriber = broker.subscriber(
        *consumer.handlers,
        consumer.retry_topic.name,  # `chirp dlq retry` re-delivers this group's dead letters there
        group_id=settings.group(consumer.name),
        batch=True,
        max_records=settings.consumer_batch_size,
        batch_timeout_ms=settings.consumer_batch_timeout_ms,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.MANUAL,
        parser=records_only,
        decoder=_records_only,
        title=consumer.name,
        description=consumer.description,
    )
    poll_without_pause(subscriber)

    @subscriber
    async def on_batch(msg: KafkaMessage) -> None:
        records: tuple[ConsumerRecord, ...] = msg.raw_message  # type: ignore[assignment]
        kafka: Any = msg.consumer
        try:
            await runner.run_batch(records)
        except ShuttingDown:
            await committer.flush()
            for tp, offset in earliest(records).items():
                kafka.seek(tp, offset)  # these records are redelivered after restart
            return
        await committer.commit(kafka, records, wait=stopping.is_set())
        await update_lag(consumer.name, kafka)

    return committer


def build_app(settings: Settings, consumers: list[Consumer]) -> FastStream:
    """One process running `consumers`: shared clients, one subscriber (group) each, metrics on a port."""
    broker = make_broker(settings, graceful_timeout=30.0)
    stopping = asyncio.Event()
    app = FastStream(broker)
    opened: list[Context] = []
    committers: list[Committer] = []
    leases: list[Lease] = []

    @app.on_startup
    async def start() -> None:
        await ensure_topics(settings, tuple(t for c in consumers for t in (c.dead_letter_topic, c.retry_topic)))
        ctx = await open_context(settings, broker)
        opened.append(ctx)
        for consumer in (c for c in consumers if c.single_process):
            lease = Lease(ctx.redis, settings.group(consumer.name))
            await lease.acquire()  # LeaseHeld: another process runs it; this one stops before subscribing
            leases.append(lease)
        for consumer in consumers:
            if consumer.setup:
                await consumer.setup(ctx, consumer)
            committers.append(subscribe(broker, consumer, ctx, stopping))
        settle_after_startup()
        log.info("consumers starting", consumers=[c.name for c in consumers])

    @app.on_shutdown
    async def stop() -> None:
        stopping.set()  # batches still in flight commit before they return
        for committer in committers:
            await committer.flush()

    @app.after_shutdown
    async def close() -> None:
        for lease in leases:
            await lease.release()
        for ctx in opened:
            await close_context(ctx)
        log.info("consumers stopped", consumers=[c.name for c in consumers])

    return app
