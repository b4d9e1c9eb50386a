"""The failure policy: how one consumer's decoded batch is handled (see the package docstring, steps 2 and 3).

A batch handler gets every event of its topic at once and, when it fails, each event alone; a per-event handler
runs in offset order per partition, partitions concurrently. A failing event is retried with exponential backoff,
then dead-lettered; an outage is waited out (consumers/runtime/outages.py); after `consumer_breaker_after` events
in a row dead-lettered for handler errors the circuit opens and the next failing event is held instead.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from aiokafka import ConsumerRecord

from chirp.logging import bind_contextvars, get_logger
from chirp.outages import outage_reason
from consumers.runtime.context import Context
from consumers.runtime.dead_letters import dead_letter_headers, publish_dead_letter
from consumers.runtime.declaration import Consumer, Handler, PermanentError
from consumers.runtime.decoding import Decoded, Item, Keys, RecentlyDecoded, decode_batch, header, load_keys
from consumers.runtime.metrics import CIRCUIT_OPEN, DEAD_LETTERED, FAILED, LATENCY, PROCESSED
from consumers.runtime.outages import Outages, ShuttingDown
from producers.broker import CORRELATION_HEADER

log = get_logger("chirp.consumer")


class Runner:
    """Runs one consumer's batches: decode, handle with retries, dead-letter, wait out outages, hold when broken."""

    def __init__(
        self, consumer: Consumer, ctx: Context, stopping: asyncio.Event, recent: RecentlyDecoded | None = None
    ) -> None:
        self.consumer = consumer
        self.recent = recent  # what the process's other consumers decoded lately
        self.ctx = ctx
        self.stopping = stopping
        settings = ctx.settings
        self.max_attempts = settings.consumer_max_attempts
        self.base_delay = settings.consumer_retry_base_ms / 1000
        self.max_delay = settings.consumer_retry_max_ms / 1000
        self.breaker_after = settings.consumer_breaker_after
        self.breaker_retry = settings.consumer_breaker_retry_ms / 1000
        self.failed_in_a_row = 0  # events dead-lettered for handler errors since the last success
        self.outages = Outages(consumer.name, stopping, self.base_delay, self.max_delay)

    async def run_batch(self, records: Sequence[ConsumerRecord]) -> None:
        await self.run_decoded(self.decode_batch(records, await self.load_keys(records)))

    async def load_keys(self, records: Sequence[ConsumerRecord]) -> Keys:
        """The erasure keys the batch belongs to; a key store that is down or incomplete is waited out."""
        waited = 0
        while True:
            try:
                return await load_keys(self.ctx.keys, records)
            except Exception as exc:
                if (reason := outage_reason(exc)) is None:
                    raise
                await self.outages.wait_out(reason, exc, waited)
                waited += 1

    def decode_batch(self, records: Sequence[ConsumerRecord], keys: Keys | None = None) -> Decoded:
        """Step 1 alone (CPU only), so a caller can decode the next batch while this one's handlers wait on I/O."""
        return decode_batch(self.consumer, records, keys, self.recent)

    async def run_decoded(self, decoded: Decoded) -> None:
        """Steps 2 and 3 for a decoded batch; its undecodable records are dead-lettered first."""
        for record, exc in decoded.rejected:
            await self.dead_letter(record, exc.reason, exc.detail, attempts=0)
        for topic_name, items in decoded.by_topic.items():
            handler = self.consumer.handlers[topic_name]
            started = time.perf_counter()
            if handler.batch:
                await self._run_batch_handler(handler, items)
            else:
                await self._run_per_partition(handler, items)
            LATENCY.labels(self.consumer.name, topic_name).observe(time.perf_counter() - started)

    async def _run_batch_handler(self, handler: Handler[Any], items: list[Item]) -> None:
        events = [i.event for i in items]
        waited = 0
        while True:
            try:
                await self._call(handler, events, items[0])
            except Exception as exc:
                if (reason := outage_reason(exc)) is None:
                    FAILED.labels(self.consumer.name, handler.topic.name).inc()
                    log.warning("batch failed, retrying one at a time", size=len(items), error=repr(exc))
                    break
                await self.outages.wait_out(reason, exc, waited)  # the whole batch again: no event is to blame
                waited += 1
            else:
                PROCESSED.labels(self.consumer.name, handler.topic.name).inc(len(items))
                self._succeeded()
                return
        for item in items:
            await self._run_one(handler, item, as_batch=True)

    async def _run_per_partition(self, handler: Handler[Any], items: list[Item]) -> None:
        partitions: dict[int, list[Item]] = defaultdict(list)
        for item in items:
            partitions[item.record.partition].append(item)

        async def in_order(part: list[Item]) -> None:
            for item in part:
                await self._run_one(handler, item, as_batch=False)

        await asyncio.gather(*(in_order(part) for part in partitions.values()))

    async def _run_one(self, handler: Handler[Any], item: Item, *, as_batch: bool) -> None:
        attempt = 0
        waited = 0
        while True:
            attempt += 1
            try:
                await self._call(handler, [item.event] if as_batch else item.event, item)
            except PermanentError as exc:
                return await self.dead_letter(item.record, "rejected_by_handler", repr(exc), attempt)
            except Exception as exc:
                if (reason := outage_reason(exc)) is not None:
                    attempt -= 1  # an outage is not the event's fault
                    await self.outages.wait_out(reason, exc, waited)
                    waited += 1
                    continue
                FAILED.labels(self.consumer.name, handler.topic.name).inc()
                if attempt < self.max_attempts:
                    await self._backoff(attempt, exc)
                elif self.breaker_after and self.failed_in_a_row >= self.breaker_after:
                    await self._hold(exc)
                else:
                    self.failed_in_a_row += 1
                    return await self.dead_letter(item.record, "handler_error", repr(exc), attempt)
            else:
                PROCESSED.labels(self.consumer.name, handler.topic.name).inc()
                self._succeeded()
                return

    async def _hold(self, exc: BaseException) -> None:
        """The circuit is open: keep the event, try it again later (a restart redelivers it)."""
        CIRCUIT_OPEN.labels(self.consumer.name).set(1)
        log.error(
            "circuit open: events keep failing, holding this one",
            failed_in_a_row=self.failed_in_a_row,
            retry_s=self.breaker_retry,
            error=repr(exc),
        )
        if self.stopping.is_set():
            raise ShuttingDown from exc
        await asyncio.sleep(self.breaker_retry)

    def _succeeded(self) -> None:
        if self.breaker_after and self.failed_in_a_row >= self.breaker_after:
            log.info("circuit closed: events succeed again", failed_in_a_row=self.failed_in_a_row)
            CIRCUIT_OPEN.labels(self.consumer.name).set(0)
        self.failed_in_a_row = 0
        self.outages.over()

    async def _call(self, handler: Handler[Any], arg: Any, first: Item) -> None:
        bind_contextvars(
            event_id=first.event.id,
            topic=first.record.topic,
            partition=first.record.partition,
            offset=first.record.offset,
            correlation_id=first.event.correlation_id or header(first.record, CORRELATION_HEADER),
        )
        await handler.fn(arg, self.ctx)

    async def _backoff(self, attempt: int, exc: BaseException) -> None:
        delay = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        log.warning("handler failed, retrying", attempt=attempt, delay_s=round(delay, 3), error=repr(exc))
        await asyncio.sleep(delay)

    async def dead_letter(self, record: ConsumerRecord, reason: str, detail: str, attempts: int) -> None:
        """Send the original record, key and headers kept, to the dead-letter topic; retried until Kafka takes it."""
        headers = dead_letter_headers(record, self.consumer.name, reason, detail, attempts)
        log.error("dead-lettered", reason=reason, error=detail[:300], attempts=attempts, offset=record.offset)
        await publish_dead_letter(
            self.ctx.publisher, self.consumer.dead_letter_topic.name, record, headers, self.outages
        )
        DEAD_LETTERED.labels(self.consumer.name, record.topic).inc()
