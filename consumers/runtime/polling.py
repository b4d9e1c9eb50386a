"""How every consumer takes a batch from Kafka, live (wiring.py) and in a replay (ops/replay.py)."""

from __future__ import annotations

from itertools import chain
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition


async def poll(kafka: Any, size: int, wait_ms: int) -> dict[TopicPartition, list[ConsumerRecord]]:
    """Up to `size` records: waits at most `wait_ms` for the first, then takes what the fetcher already holds in
    one go (one transaction, one pipeline per batch); an empty answer returns at once, so the caller polls again."""
    batch: dict[TopicPartition, list[ConsumerRecord]] = await kafka.getmany(timeout_ms=wait_ms, max_records=size)
    count = sum(len(part) for part in batch.values())
    while 0 < count < size:
        more = await kafka.getmany(timeout_ms=0, max_records=size - count)
        if not more:
            break
        for tp, part in more.items():
            batch.setdefault(tp, []).extend(part)
        count += sum(len(part) for part in more.values())
    return batch


def take_batches_with_poll(subscriber: Any, size: int, wait_ms: int) -> None:
    """Make a FastStream batch subscriber take its batches with `poll`.

    FastStream's own `get_msg` sleeps `batch_timeout_ms` after every empty poll, so an event arriving during that
    sleep waited for it (up to 50 ms per consumer it passes through, on an idle pipeline). Its consume loop calls
    `self.get_msg(consumer)` and handles what it returns when not empty (pinned by
    tests/integration/test_library_internals.py)."""

    async def get_msg(kafka: Any) -> tuple[ConsumerRecord, ...]:
        return tuple(chain.from_iterable((await poll(kafka, size, wait_ms)).values()))

    subscriber.get_msg = get_msg
