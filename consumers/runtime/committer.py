"""Committing handled batches' offsets: gathered for a short interval, then sent in one request, in order."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from chirp.logging import get_logger

log = get_logger("chirp.consumer")


class Committer:
    """Commits handled batches' offsets at most once per `interval_s`, while the next batches are fetched and handled.

    Offsets are explicit (each partition's last handled offset + 1), so a commit never covers records fetched after
    the batches it covers. At a few events per batch a commit per batch was most of a consumer's requests to Kafka
    (and of Kafka's work); gathering them costs nothing but redelivery after a crash of at most `interval_s` of
    events, which idempotent handlers absorb. `flush` (shutdown) and `commit(..., wait=True)` send at once. A
    commit that fails (a rebalance took the partition, the broker is away) is logged: the next commit covers it,
    or the records are redelivered.
    """

    def __init__(self, interval_s: float = 0.0) -> None:
        self.interval_s = interval_s
        self._offsets: dict[TopicPartition, int] = {}
        self._kafka: Any = None
        self._timer: asyncio.TimerHandle | None = None
        self._pending: asyncio.Task[None] | None = None  # the newest commit sent; each waits for the one before

    async def commit(self, kafka_consumer: Any, records: Sequence[ConsumerRecord], *, wait: bool) -> None:
        for record in records:
            self._offsets[TopicPartition(record.topic, record.partition)] = record.offset + 1
        self._kafka = kafka_consumer
        if wait:
            await self.flush()
        elif self.interval_s <= 0:
            self._send()
        elif self._timer is None and self._offsets:
            self._timer = asyncio.get_running_loop().call_later(self.interval_s, self._send)

    async def flush(self) -> None:
        """Send what is gathered now and wait until every commit sent so far is answered."""
        self._send()
        if self._pending is not None:
            pending, self._pending = self._pending, None
            await pending

    def _send(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._offsets:
            offsets, self._offsets = self._offsets, {}
            self._pending = asyncio.create_task(_commit(self._kafka, offsets, self._pending))


async def _commit(kafka_consumer: Any, offsets: dict[TopicPartition, int], before: asyncio.Task[None] | None) -> None:
    if before is not None:
        await before  # commits stay in order: an older one never lands after a newer one
    try:
        await kafka_consumer.commit(offsets)
    except KafkaError as exc:
        log.warning("commit failed; a later commit covers it or the batch is redelivered", error=repr(exc))


def earliest(records: Sequence[ConsumerRecord]) -> dict[TopicPartition, int]:
    """The first offset of each partition in `records` (where to seek so they are redelivered)."""
    found: dict[TopicPartition, int] = {}
    for record in reversed(records):
        found[TopicPartition(record.topic, record.partition)] = record.offset
    return found
