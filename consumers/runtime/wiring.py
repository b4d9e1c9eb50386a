"""FastStream wiring: one batch subscriber (consumer group, manual acks) per consumer, and the process around them."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from aiokafka import ConsumerRecord
from faststream import AckPolicy, FastStream
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from chirp.heap import settle_after_startup
from chirp.logging import get_logger
from chirp.settings import Settings
from consumers.runtime.committer import Committer, earliest
from consumers.runtime.context import Context, close_context, open_context
from consumers.runtime.declaration import Consumer
from consumers.runtime.decoding import RecentlyDecoded
from consumers.runtime.lease import Lease
from consumers.runtime.metrics import update_lag
from consumers.runtime.outages import ShuttingDown
from consumers.runtime.policy import Runner
from consumers.runtime.polling import Gathering, take_batches_with_poll
from producers.broker import ensure_topics, make_broker

log = get_logger("chirp.consumer")
LAG_EVERY_S = 1.0  # the lag gauges are scraped every few seconds: per batch they cost a look-up per partition


async def _records_only(msg: KafkaMessage) -> Any:
    """The batch's raw records as the handler's argument: the runner decodes them itself, and the handler needs no
    `KafkaMessage` parameter, whose context field FastStream resolves on a worker thread (a thread hop per batch)."""
    return msg.raw_message


def subscribe(
    broker: KafkaBroker,
    consumer: Consumer,
    ctx: Context,
    stopping: asyncio.Event,
    recent: RecentlyDecoded | None = None,
) -> Committer:
    """Attach one consumer group to the broker as a FastStream batch subscriber with manual acks."""
    runner = Runner(consumer, ctx, stopping, recent)
    settings = ctx.settings
    committer = Committer(settings.consumer_commit_interval_ms / 1000)
    lag_updated_at = 0.0
    gather_ms = settings.consumer_brief_gather_ms if consumer.gather == "brief" else settings.consumer_gather_ms
    gathering = Gathering(gather_ms, settings.consumer_gather_bytes) if consumer.gather else None

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

    take_batches_with_poll(subscriber, settings.consumer_batch_size, settings.consumer_batch_timeout_ms, gathering)

    @subscriber
    async def on_batch(records: Any) -> None:  # the batch's records, as `_records_only` hands them over
        nonlocal lag_updated_at
        kafka: Any = subscriber.consumer
        try:
            await runner.run_batch(records)
        except ShuttingDown:
            await committer.flush()
            for tp, offset in earliest(records).items():
                kafka.seek(tp, offset)  # these records are redelivered after restart
            return
        await committer.commit(kafka, records, wait=stopping.is_set())
        if (now := time.monotonic()) - lag_updated_at >= LAG_EVERY_S:
            lag_updated_at = now
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
        read = Counter(topic for c in consumers for topic in c.handlers)
        recent = (
            RecentlyDecoded({topic for topic, n in read.items() if n > 1})
            if max(read.values(), default=0) > 1
            else None
        )
        for consumer in consumers:
            if consumer.setup:
                await consumer.setup(ctx, consumer)
            committers.append(subscribe(broker, consumer, ctx, stopping, recent))
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
