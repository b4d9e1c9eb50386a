"""Committing a handled batch's offsets, overlapped with the next batch."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from chirp.logging import get_logger

log = get_logger("chirp.consumer")


class Committer:
    """Commits a handled batch's offsets while the next batch is fetched and handled; commits stay in order.

    Offsets are explicit (the batch's last offset + 1 per partition), so a commit never covers records fetched
    after the batch. A commit that fails (a rebalance took the partition, the broker is away) is logged: the
    next commit covers it, or the records are redelivered, which idempotent handlers absorb.
    """

    def __init__(self) -> None:
        self._pending: asyncio.Task[None] | None = None

    async def commit(self, kafka_consumer: Any, records: Sequence[ConsumerRecord], *, wait: bool) -> None:
        offsets: dict[TopicPartition, int] = {}
        for record in records:
            offsets[TopicPartition(record.topic, record.partition)] = record.offset + 1
        if not offsets:
            return
        await self.flush()
        self._pending = asyncio.create_task(self._commit(kafka_consumer, offsets))
        if wait:
            await self.flush()

    async def flush(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            await pending

    @staticmethod
    async def _commit(kafka_consumer: Any, offsets: dict[TopicPartition, int]) -> None:
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
