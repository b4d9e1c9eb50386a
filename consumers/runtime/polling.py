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


class Gathering:
    """Switches a consumer's fetches between a long poll (answered by the first record) and gathering (held by
    Kafka up to `gather_ms` unless `gather_bytes` arrive): after a batch with records the next fetch gathers,
    after an empty poll it long-polls again.

    So while events keep coming each fetch brings what arrived in `gather_ms`, and the first event after a quiet
    spell is fetched at once; an idle consumer makes one fetch per long poll, not one per `gather_ms`. The
    fetcher reads `_fetch_max_wait_ms` and `_fetch_min_bytes` each time it builds a request (pinned by
    tests/integration/test_library_internals.py). The mode is set before anything awaits after the records were
    taken, so the fetch their taking triggers already has it."""

    def __init__(self, gather_ms: int, gather_bytes: int) -> None:
        self.gather = (gather_ms, gather_bytes)
        self.idle: tuple[int, int] | None = None  # the fetcher's own long poll, read the first time
        self.gathering = False

    def after(self, kafka: Any, took: bool) -> None:
        if took == self.gathering:
            return
        fetcher = kafka._fetcher
        if self.idle is None:
            self.idle = (fetcher._fetch_max_wait_ms, fetcher._fetch_min_bytes)
        fetcher._fetch_max_wait_ms, fetcher._fetch_min_bytes = self.gather if took else self.idle
        self.gathering = took


def take_batches_with_poll(subscriber: Any, size: int, wait_ms: int, gathering: Gathering | None = None) -> None:
    """Make a FastStream batch subscriber take its batches with `poll` (and gather them, with `gathering`).

    FastStream's own `get_msg` sleeps `batch_timeout_ms` after every empty poll, so an event arriving during that
    sleep waited for it (up to 50 ms per consumer it passes through, on an idle pipeline). Its consume loop calls
    `self.get_msg(consumer)` and handles what it returns when not empty (pinned by
    tests/integration/test_library_internals.py)."""

    async def get_msg(kafka: Any) -> tuple[ConsumerRecord, ...]:
        batch = await poll(kafka, size, wait_ms)
        if gathering is not None:
            gathering.after(kafka, bool(batch))
        return tuple(chain.from_iterable(batch.values()))

    subscriber.get_msg = get_msg
