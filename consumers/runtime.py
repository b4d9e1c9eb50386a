"""What every consumer gets for free: batches, ordered retries, dead letters, commits, logging and metrics.

A consumer module declares a `Consumer` and its handlers; this runtime subscribes it to Kafka through FastStream
(one consumer group per consumer, manual acks) and, for every batch it polls:

1. decodes each record into its event model; an undecodable record, an unknown type or an unknown version goes to
   the consumer's dead-letter topic at once;
2. calls the handlers: a batch handler gets every event of its topic in the batch (one transaction, one pipeline);
   a per-event handler is called in offset order per partition, partitions concurrently. When a batch handler
   fails, its events are retried one at a time, so one poison event cannot hold back the others;
3. retries a failing event with exponential backoff up to `consumer_max_attempts`, then dead-letters it with
   headers naming the consumer, the error, the attempts and the original topic/partition/offset. An outage is not
   the event's fault: an error that `chirp.outages.outage_reason` names (Kafka, PostgreSQL or Redis unreachable,
   full, out of memory, read-only, starting or shutting down; a serialization failure or deadlock) is retried,
   the whole batch at once for a batch handler, until the store answers again; the partition holds, nothing is
   dead-lettered, `chirp_consumer_outage{consumer,reason}` is 1 and the log says "outage began" and "outage over"
   once each. Only an event that fails with another error is the event's fault. Neither is a bug that fails every
   event: after `consumer_breaker_after` events in a row dead-lettered for handler errors the circuit opens, and
   the next failing event is held (tried every `consumer_breaker_retry_ms`, its partition waiting behind it,
   `chirp_consumer_circuit_open` at 1) until it succeeds, e.g. after the fix;
4. commits only after every event of the batch was handled or dead-lettered, so the committed offset never passes
   an unhandled event; a crash before the commit means redelivery, and handlers are idempotent.

On SIGTERM/SIGINT FastStream stops polling and waits for the batch in flight, which then commits.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar, get_args

import asyncpg
import orjson
import redis.asyncio as aioredis
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from faststream import AckPolicy, FastStream
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from prometheus_client import Counter, Gauge, Histogram
from pydantic import ValidationError

from chirp import redis_client
from chirp.heap import settle_after_startup
from chirp.logging import bind_contextvars, get_logger
from chirp.outages import outage_reason
from chirp.settings import Settings
from producers.broker import CORRELATION_HEADER, Publisher, ensure_topics, make_broker
from schemas import topics
from schemas.events import BY_TOPIC, Event

log = get_logger("chirp.consumer")
E = TypeVar("E", bound=Event)

PROCESSED = Counter("chirp_events_processed", "Events handled", ["consumer", "topic"])
FAILED = Counter("chirp_events_failed", "Handler attempts that raised", ["consumer", "topic"])
DEAD_LETTERED = Counter("chirp_events_dead_lettered", "Events sent to the dead-letter topic", ["consumer", "topic"])
LATENCY = Histogram("chirp_handler_seconds", "Handler latency per batch", ["consumer", "topic"])
LAG = Gauge("chirp_consumer_lag", "End offset minus position", ["consumer", "topic", "partition"])
CIRCUIT_OPEN = Gauge("chirp_consumer_circuit_open", "1 while failing events are held, not dead-lettered", ["consumer"])
OUTAGE = Gauge("chirp_consumer_outage", "1 while waiting out a store or broker outage", ["consumer", "reason"])
# How often work is retried during an outage, at most: soon after the store is back, without hammering it meanwhile.
OUTAGE_RETRY_MAX_S = 1.0


class PermanentError(Exception):
    """Raised by a handler for an event that can never succeed: dead-lettered without retries."""


@dataclass
class Context:
    """Shared clients a handler receives: the store pool, Redis, a publisher and the settings."""

    settings: Settings
    pg: asyncpg.Pool
    redis: aioredis.Redis
    publisher: Publisher
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def announcing(self) -> bool:
        """Whether Redis PUBLISH reaches subscribers. It does not while a replay builds a shadow copy (see
        chirp/ops/replay.py), so a handler can skip preparing announcements nobody receives."""
        return bool(getattr(self.redis, "announcing", True))


BatchHandler = Callable[[list[Any], Context], Awaitable[None]]
Setup = Callable[[Context, "Consumer"], Awaitable[None]]
EventHandler = Callable[[Any, Context], Awaitable[None]]


@dataclass(frozen=True)
class Handler(Generic[E]):
    topic: topics.Topic
    fn: Callable[..., Awaitable[None]]
    batch: bool
    model: type[Event]


@dataclass
class Consumer:
    """One consumer group: its name, its handlers by topic, and optional setup run once at start."""

    name: str
    description: str = ""
    # The read model it owns, for `chirp replay` / `rebuild --all` (chirp/ops/replay.py): its PostgreSQL tables,
    # the prefixes of every Redis key it writes, and the consumers whose models it reads (rebuilt before it).
    tables: tuple[str, ...] = ()
    redis_prefixes: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    # Indexes of its tables that only readers use, never its handlers: a replay builds them once the rows are in,
    # in one sorted pass, instead of keeping them up row by row (full-text and array indexes always are).
    reader_indexes: tuple[str, ...] = ()
    handlers: dict[str, Handler[Any]] = field(default_factory=dict)
    setup: Setup | None = None

    def on(
        self, topic: topics.Topic, *, batch: bool = False, model: type[Event] | None = None
    ) -> Callable[[Callable[..., Awaitable[None]]], Any]:
        """Register `fn(event, ctx)` (or `fn(events, ctx)` with `batch=True`) for one topic.

        The event model is the one published on that topic unless `model` names another.
        """

        def register(fn: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
            if topic.name in self.handlers:
                raise ValueError(f"{self.name} already handles {topic.name}")
            self.handlers[topic.name] = Handler(topic, fn, batch, model or BY_TOPIC[topic.name])
            return fn

        return register

    def on_setup(self, fn: Setup) -> Setup:
        """Register `fn(ctx, consumer)`, run once before the first batch (create tables, load scripts, start tasks);
        `consumer` is the one starting (a replay or a benchmark may run a copy reading other topics)."""
        self.setup = fn
        return fn

    @property
    def dead_letter_topic(self) -> topics.Topic:
        return topics.dead_letters(self.name)

    @property
    def retry_topic(self) -> topics.Topic:
        return topics.retries(self.name)


def load(name: str) -> Consumer:
    """`posts` → consumers.posts.consumer; a dotted path (`tests.x.probe`) imports that module instead."""
    module = importlib.import_module(name if "." in name else f"consumers.{name}")
    consumer = module.consumer
    if not isinstance(consumer, Consumer):
        raise TypeError(f"{module.__name__}.consumer is not a Consumer")
    return consumer


def all_consumers() -> list[Consumer]:
    """Every consumer module under `consumers/` (the product's and any added since)."""
    import pkgutil

    import consumers as package

    skip = {"runtime", "markdown"}
    names = [m.name for m in pkgutil.iter_modules(package.__path__) if m.name not in skip and not m.ispkg]
    found = []
    for name in names:
        module = importlib.import_module(f"consumers.{name}")
        if isinstance(getattr(module, "consumer", None), Consumer):
            found.append(module.consumer)
    return found


# Decoding ---------------------------------------------------------------------------------------------------


class Rejected(Exception):
    """A record that can never be handled: the reason goes in the dead-letter headers."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def decode(record: ConsumerRecord, model: type[Event]) -> Event:
    """Parse a record into `model`, or raise `Rejected` naming why not."""
    try:
        return model.__pydantic_validator__.validate_json(record.value or b"")  # type: ignore[no-any-return]
    except ValidationError as exc:
        raise _reason(record, model, exc) from None


async def newest_events(settings: Settings, consumer: Consumer) -> list[Event]:
    """The last event of each partition `consumer` reads, as the log stands now (undecodable ones left out)."""
    from chirp.ops import _kafka

    async with _kafka.reader(settings) as client:
        ends = await client.end_offsets(await _kafka.partitions(client, consumer.handlers))
    records = await _kafka.records_at(settings, {tp: end - 1 for tp, end in ends.items() if end > 0})
    events = []
    for tp, record in records.items():
        try:
            events.append(decode(record, consumer.handlers[tp.topic].model))
        except Rejected:
            continue
    return events


def retried_record(record: ConsumerRecord, consumer: Consumer) -> ConsumerRecord:
    """A record of the consumer's retry topic (`chirp dlq retry`) as the one first dead-lettered: same topic,
    partition and offset (named in its `dlq_*` headers), so its handler, logs and a new dead letter name the
    original. Only the offsets committed are the retry topic's (the commit uses the records as polled)."""
    headers = {k: v.decode(errors="replace") for k, v in record.headers or ()}
    origin = headers.get("dlq_topic", "")
    if origin not in consumer.handlers:
        raise Rejected("unknown_origin", f"a retry of {origin!r}, which {consumer.name} does not read")
    partition, offset = int(headers.get("dlq_partition") or 0), int(headers.get("dlq_offset") or 0)
    return dataclasses.replace(record, topic=origin, partition=partition, offset=offset)


def _reason(record: ConsumerRecord, model: type[Event], exc: ValidationError) -> Rejected:
    """Why a record failed validation (the slow path, taken only for bad records)."""
    try:
        raw = orjson.loads(record.value or b"")
    except orjson.JSONDecodeError as json_error:
        return Rejected("invalid_json", str(json_error))
    if not isinstance(raw, dict):
        return Rejected("invalid_payload", "not a JSON object")
    if raw.get("type") not in get_args(model.model_fields["type"].annotation):
        return Rejected("unknown_type", f"{raw.get('type')!r} on a topic of {model.__name__}")
    expected = model.model_fields["version"].default
    if raw.get("version") != expected:
        return Rejected("unknown_version", f"{raw.get('version')!r}, this consumer reads {expected}")
    return Rejected("invalid_payload", _short(exc))


def _short(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])


# Processing -------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Item:
    record: ConsumerRecord
    event: Event


@dataclass(slots=True)
class Decoded:
    """A batch after decoding: events by topic, in offset order, and the records that could not be decoded."""

    by_topic: dict[str, list[Item]]
    rejected: list[tuple[ConsumerRecord, Rejected]]


class Runner:
    """Runs one consumer's batches: the policy described in the module docstring."""

    def __init__(self, consumer: Consumer, ctx: Context, stopping: asyncio.Event) -> None:
        self.consumer = consumer
        self.ctx = ctx
        self.stopping = stopping
        settings = ctx.settings
        self.max_attempts = settings.consumer_max_attempts
        self.base_delay = settings.consumer_retry_base_ms / 1000
        self.max_delay = settings.consumer_retry_max_ms / 1000
        self.breaker_after = settings.consumer_breaker_after
        self.breaker_retry = settings.consumer_breaker_retry_ms / 1000
        self.failed_in_a_row = 0  # events dead-lettered for handler errors since the last success
        self.retry_topic = consumer.retry_topic.name  # `chirp dlq retry` re-delivers there
        self.outages: dict[str, float] = {}  # reason -> when it began (monotonic), until work succeeds again

    async def run_batch(self, records: Sequence[ConsumerRecord]) -> None:
        await self.run_decoded(self.decode_batch(records))

    def decode_batch(self, records: Sequence[ConsumerRecord]) -> Decoded:
        """Step 1 alone (CPU only), so a caller can decode the next batch while this one's handlers wait on I/O."""
        decoded = Decoded(defaultdict(list), [])
        for record in records:
            try:
                if record.topic == self.retry_topic:
                    record = retried_record(record, self.consumer)
                model = self.consumer.handlers[record.topic].model
                decoded.by_topic[record.topic].append(Item(record, decode(record, model)))
            except Rejected as exc:
                decoded.rejected.append((record, exc))
        return decoded

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
                await self._wait_out(reason, exc, waited)  # the whole batch again: no event is to blame
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
                    await self._wait_out(reason, exc, waited)
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
        self._outage_over()

    async def _wait_out(self, reason: str, exc: BaseException, waited: int) -> None:
        """Wait before trying work that failed for an outage again; the gauge and the log change once per outage."""
        if reason not in self.outages:
            self.outages[reason] = time.monotonic()
            OUTAGE.labels(self.consumer.name, reason).set(1)
            log.warning(
                "outage began: waiting it out, nothing is dead-lettered",
                consumer=self.consumer.name,
                reason=reason,
                error=f"{type(exc).__name__}: {exc}",
            )
        if self.stopping.is_set():
            raise ShuttingDown from exc
        await asyncio.sleep(min(self.max_delay, OUTAGE_RETRY_MAX_S, self.base_delay * 2**waited))

    def _outage_over(self) -> None:
        """Work succeeded: every outage being waited out is over."""
        now = time.monotonic()
        for reason, began in self.outages.items():
            OUTAGE.labels(self.consumer.name, reason).set(0)
            log.info("outage over", consumer=self.consumer.name, reason=reason, duration_s=round(now - began, 3))
        self.outages.clear()

    async def _call(self, handler: Handler[Any], arg: Any, first: Item) -> None:
        bind_contextvars(
            event_id=first.event.id,
            topic=first.record.topic,
            partition=first.record.partition,
            offset=first.record.offset,
            correlation_id=first.event.correlation_id or _header(first.record, CORRELATION_HEADER),
        )
        await handler.fn(arg, self.ctx)

    async def _backoff(self, attempt: int, exc: BaseException) -> None:
        delay = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        log.warning("handler failed, retrying", attempt=attempt, delay_s=round(delay, 3), error=repr(exc))
        await asyncio.sleep(delay)

    async def dead_letter(self, record: ConsumerRecord, reason: str, detail: str, attempts: int) -> None:
        """Send the original record, key and headers kept, to the dead-letter topic; retried until Kafka takes it."""
        headers = {k: v.decode(errors="replace") for k, v in record.headers or ()}
        headers.update(
            {
                "dlq_consumer": self.consumer.name,
                "dlq_reason": reason,
                "dlq_error": detail[:1000],
                "dlq_attempts": str(attempts),
                "dlq_topic": record.topic,
                "dlq_partition": str(record.partition),
                "dlq_offset": str(record.offset),
                "dlq_at": datetime.now(UTC).isoformat(),
            }
        )
        log.error("dead-lettered", reason=reason, error=detail[:300], attempts=attempts, offset=record.offset)
        topic = self.consumer.dead_letter_topic.name
        waited = 0
        while True:
            try:
                await self.ctx.publisher.publish_raw(topic, record.key, record.value, headers)
                break
            except Exception as exc:
                if (outage := outage_reason(exc)) is None:
                    raise
                await self._wait_out(outage, exc, waited)
                waited += 1
        if waited:
            self._outage_over()  # Kafka took it: the outage this publish waited out is over
        DEAD_LETTERED.labels(self.consumer.name, record.topic).inc()


class ShuttingDown(Exception):
    """An outage (or an open circuit) outlasted the shutdown: leave the batch uncommitted so it is redelivered."""


def _header(record: ConsumerRecord, name: str) -> str:
    for key, value in record.headers or ():
        if key == name:
            return value.decode(errors="replace")
    return ""


async def _update_lag(consumer_name: str, kafka_consumer: Any) -> None:
    for tp in kafka_consumer.assignment():
        end = kafka_consumer.highwater(tp)
        if end is not None:
            position = await kafka_consumer.position(tp)
            LAG.labels(consumer_name, tp.topic, tp.partition).set(max(0, end - position))


# Wiring -----------------------------------------------------------------------------------------------------


async def _records_only(msg: Any) -> None:
    """Skip FastStream's per-message body decoding: the runner decodes the raw records itself."""
    return None


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

    @subscriber
    async def on_batch(msg: KafkaMessage) -> None:
        records: tuple[ConsumerRecord, ...] = msg.raw_message  # type: ignore[assignment]
        kafka: Any = msg.consumer
        try:
            await runner.run_batch(records)
        except ShuttingDown:
            await committer.flush()
            for tp, offset in _earliest(records).items():
                kafka.seek(tp, offset)  # these records are redelivered after restart
            return
        await committer.commit(kafka, records, wait=stopping.is_set())
        await _update_lag(consumer.name, kafka)

    return committer


def _earliest(records: Sequence[ConsumerRecord]) -> dict[TopicPartition, int]:
    earliest: dict[TopicPartition, int] = {}
    for record in reversed(records):
        earliest[TopicPartition(record.topic, record.partition)] = record.offset
    return earliest


async def open_context(settings: Settings, broker: KafkaBroker) -> Context:
    from store.postgres import connect

    pg = await connect(settings)
    cache = redis_client.from_url(settings.redis_url, decode_responses=True)
    return Context(settings=settings, pg=pg, redis=cache, publisher=Publisher(broker))


async def close_context(ctx: Context) -> None:
    await ctx.pg.close()
    await ctx.redis.aclose()


def build_app(settings: Settings, consumers: list[Consumer]) -> FastStream:
    """One process running `consumers`: shared clients, one subscriber (group) each, metrics on a port."""
    broker = make_broker(settings, graceful_timeout=30.0)
    stopping = asyncio.Event()
    app = FastStream(broker)
    holder: dict[str, Context] = {}
    committers: list[Committer] = []

    @app.on_startup
    async def start() -> None:
        await ensure_topics(settings, tuple(t for c in consumers for t in (c.dead_letter_topic, c.retry_topic)))
        ctx = holder["ctx"] = await open_context(settings, broker)
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
        if "ctx" in holder:
            await close_context(holder["ctx"])
        log.info("consumers stopped", consumers=[c.name for c in consumers])

    return app
