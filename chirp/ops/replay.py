"""`chirp replay`: rebuild one consumer's read model from the log while the app stays live.

1. **Build** a shadow copy: the consumer's tables are cloned (same columns, constraints and index names) into a
   new schema `<name>_shadow_<n>`, its Redis keys get a shadow root (`~replay:<name>:<n>:` before every key under
   its prefixes), and its own handlers run through the runtime's `Runner` with a pool whose `search_path` starts
   with the shadow schema and a Redis client that rewrites its keys. A new consumer group
   (`<name>.replay-<n>`, visible in `chirp lag`) reads from the chosen point to the live end.
   A replay dead-lettering more than `DEAD_LETTERS_ALLOWED` events or `DEAD_LETTER_SHARE` of them stops here.
   Full-text and array indexes (GIN, GiST, RUM) are built once the shadow is near the end, in one pass each, then
   the shadow catches up again (see `_shadow_pg.LATE_METHODS`).
2. **Swap** once the shadow is within a batch of the end (its tables ANALYZEd first, so the first queries after
   the swap are planned with statistics): one transaction takes a SHARE lock on the live tables
   (readers go on, the live consumer's writes wait), catches the shadow up to the end offsets read under that
   lock (so it holds every event any reader could have seen), then moves the live tables out and the shadow ones
   in. Redis keys follow in one atomic script. Readers see the old model or the new one, never a half-built one.
3. **Drain**: the live consumer may have applied, into the old tables, events fetched just before the swap; the
   replay group consumes up to the end offsets read after the swap, into the now-live model (handlers are
   idempotent, so events the live consumer also applies are harmless).
4. **Hand off**: a stopped (or never started) live group gets the replay's offsets; a running one keeps its own,
   which are never past what the new model holds. Then the old copy and the replay group are dropped.

Which tables and keys a consumer owns it declares (see `read_model_of`). Handlers run as in production, except
that events they would publish are dropped (a rebuild must not emit events again) and counted, and Redis PUBLISH
commands are not sent (their reply is 0) until the swap.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import json
import re
import sys
import time
from collections.abc import Callable, Coroutine
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import asyncpg
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from chirp import redis_client
from chirp.heap import settle_after_startup
from chirp.ops import _kafka, _shadow_pg, _shadow_redis
from chirp.settings import Settings
from consumers.runtime import Consumer, Context, Decoded, Runner, all_consumers
from producers.broker import Publisher, ensure_topics, make_broker
from schemas.events import Event

T = TypeVar("T")
# A replay that dead-letters more than this (a bug, a schema the code does not match) stops before its swap.
DEAD_LETTERS_ALLOWED, DEAD_LETTER_SHARE = 100, 0.01
COMMIT_EVERY_S = 1.0  # the replay group's offsets only show progress: the hand-off uses the handled positions
REPLAY_FETCH_BYTES = 1024 * 1024  # per partition and fetch: a backlog batch (2,000 events) at once; more only costs RSS


class ReplayError(Exception):
    """A replay that cannot start or finish; the message says why."""


@dataclass(frozen=True)
class ReadModel:
    """What a consumer owns: PostgreSQL tables, Redis key prefixes, and the consumers whose models it reads."""

    tables: tuple[str, ...] = ()
    redis_prefixes: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    reader_indexes: tuple[str, ...] = ()  # built after the rows are in (see `Consumer.reader_indexes`)

    @property
    def empty(self) -> bool:
        return not self.tables and not self.redis_prefixes


# Tie-break of the rebuild order (dependencies come first regardless): the product's models, upstream first.
DEFAULT_ORDER = ("users", "posts", "timelines", "search", "trending", "mentions")


def read_model_of(consumer: Consumer) -> ReadModel:
    """The read model a consumer declares: `Consumer(tables=, redis_prefixes=, after=)`."""
    return ReadModel(
        tuple(consumer.tables),
        tuple(consumer.redis_prefixes),
        tuple(consumer.after),
        tuple(consumer.reader_indexes),
    )


def resolve(name: str) -> Consumer:
    """`posts` → consumers.posts.consumer; a dotted path imports that module (as `chirp consume` does)."""
    module = importlib.import_module(name if "." in name else f"consumers.{name}")
    consumer = getattr(module, "consumer", None)
    if not isinstance(consumer, Consumer):
        raise ReplayError(f"{module.__name__} declares no `consumer`")
    return consumer


def rebuild_order(consumers: list[Consumer]) -> list[Consumer]:
    """Consumers that own a read model, each after the ones it reads (`after`), else in `DEFAULT_ORDER`."""
    owning = {c.name: c for c in consumers if not read_model_of(c).empty}
    rank = {name: i for i, name in enumerate(DEFAULT_ORDER)}
    ordered: list[Consumer] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name not in owning or owning[name] in ordered:
            return
        if name in visiting:
            raise ReplayError(f"read models depend on each other in a cycle through {name}")
        visiting.add(name)
        for upstream in sorted(read_model_of(owning[name]).after, key=lambda n: (rank.get(n, 99), n)):
            visit(upstream)
        ordered.append(owning[name])

    for name in sorted(owning, key=lambda n: (rank.get(n, len(rank)), n)):
        visit(name)
    return ordered


@dataclass
class Progress:
    """Where a replay is: phase (plan, build, index, swap, drain, done), events handled, events left, rate, ETA."""

    consumer: str
    phase: str
    processed: int = 0
    lag: int = 0
    rate: float = 0.0

    @property
    def eta_s(self) -> float | None:
        return self.lag / self.rate if self.rate > 0 else None


@dataclass
class ReplayResult:
    consumer: str
    group: str
    planned: int  # events between the start point and the end when the replay began
    processed: int = 0  # events the shadow's handlers were given (all phases; includes events published meanwhile)
    dead_lettered: int = 0
    publishes_dropped: int = 0
    seconds: float = 0.0
    tables: tuple[str, ...] = ()
    redis_keys: int = 0
    offsets_handed_off: bool = False
    dry_run: bool = False
    start: dict[str, int] = field(default_factory=dict)  # "topic/partition" -> first offset replayed

    @property
    def rate(self) -> float:
        return self.processed / self.seconds if self.seconds else 0.0


class _DroppingPublisher(Publisher):
    """Drops (and counts) events a handler publishes during a replay; dead letters still go through."""

    dropped = 0

    async def publish(self, event: Event) -> None:
        self.dropped += 1

    async def publish_many(self, events: list[Event], chunk: int = 1000) -> None:
        self.dropped += len(events)


class _CountingRunner(Runner):
    """A replay's runner: it counts its dead letters and stops on too many (`too_many_dead_letters`) instead of
    holding events like a live consumer's open circuit."""

    dead = 0
    last_dead = ""

    def __init__(self, consumer: Consumer, ctx: Context, stopping: asyncio.Event) -> None:
        super().__init__(consumer, ctx, stopping)
        self.breaker_after = 0

    async def dead_letter(self, record: ConsumerRecord, reason: str, detail: str, attempts: int) -> None:
        self.dead += 1
        self.last_dead = f"{reason}: {detail[:300]}"
        await super().dead_letter(record, reason, detail, attempts)


def too_many_dead_letters(dead: int, processed: int) -> bool:
    """Whether a replay dead-lettered so much that its model would be missing data (then it must not swap in)."""
    return dead > max(DEAD_LETTERS_ALLOWED, DEAD_LETTER_SHARE * processed)


def _safe(name: str) -> str:
    """A short identifier for `name` (schema names have 63 bytes); long names keep a hash, so they stay distinct."""
    safe = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "consumer"
    if len(safe) <= 30:
        return safe
    return f"{safe[:21]}_{hashlib.sha256(name.encode()).hexdigest()[:8]}"


class Replay:
    """One replay of one consumer (see the module docstring); `run()` returns an honest `ReplayResult`."""

    def __init__(
        self,
        settings: Settings,
        consumer: Consumer,
        model: ReadModel | None = None,
        *,
        from_time: datetime | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        catch_up_lag: int | None = None,
    ) -> None:
        self.settings = settings
        self.consumer = consumer
        self.model = model or read_model_of(consumer)
        self.from_time = from_time
        self.on_progress = on_progress or (lambda _: None)
        self.catch_up_lag = settings.consumer_batch_size if catch_up_lag is None else catch_up_lag
        self.generation = time.time_ns() // 1_000_000
        base = _safe(consumer.name)
        self.shadow_schema = f"{base}_shadow_{self.generation}"
        self.old_schema = f"{base}_old_{self.generation}"
        self.redis_root = f"~replay:{base}:{self.generation}:"
        self.live_group = settings.group(consumer.name)
        self.group = f"{self.live_group}.replay-{self.generation}"
        self.progress = Progress(consumer.name, "plan")
        self._positions: dict[TopicPartition, int] = {}
        self._late_indexes: list[str] = []
        self._offsets: AIOKafkaConsumer
        self._committed_at = 0.0
        self._started = 0.0
        if any(self.redis_root.startswith(p) or not p for p in self.model.redis_prefixes):
            raise ReplayError(f"redis prefixes {self.model.redis_prefixes} would contain the shadow keys")

    # Planning ------------------------------------------------------------------------------------------------

    async def _start_offsets(self, kafka: AIOKafkaConsumer, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        if self.from_time is None:
            return dict(await kafka.beginning_offsets(tps))
        ends = await kafka.end_offsets(tps)
        found = await kafka.offsets_for_times({tp: int(self.from_time.timestamp() * 1000) for tp in tps})
        return {tp: found[tp].offset if found.get(tp) else ends[tp] for tp in tps}

    async def plan(self) -> ReplayResult:
        """What a replay would do, without doing it (`--dry-run`)."""
        async with _kafka.reader(self.settings) as kafka:
            tps = await _kafka.partitions(kafka, self.consumer.handlers)
            start = await self._start_offsets(kafka, tps)
            ends = await kafka.end_offsets(tps)
        return ReplayResult(
            self.consumer.name,
            self.group,
            planned=sum(ends[tp] - start[tp] for tp in tps),
            tables=self.model.tables,
            dry_run=True,
            start={f"{tp.topic}/{tp.partition}": start[tp] for tp in tps},
        )

    # Running -------------------------------------------------------------------------------------------------

    async def run(self) -> ReplayResult:
        """Build, swap, drain, hand off, clean up; raises ReplayError (the live model untouched) on failure."""
        if self.model.empty:
            raise ReplayError(f"{self.consumer.name} owns no read model: nothing to rebuild")
        self._started = time.monotonic()
        async with AsyncExitStack() as stack:
            live_pg = await _shadow_pg.pool(self.settings, max_size=3)
            stack.push_async_callback(live_pg.close)
            lock = await stack.enter_async_context(live_pg.acquire())
            if not await lock.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", f"replay:{self.consumer.name}"):
                raise ReplayError(f"another replay of {self.consumer.name} is running")
            stack.push_async_callback(lock.execute, "SELECT pg_advisory_unlock_all()")
            live_redis = redis_client.from_url(self.settings.redis_url, decode_responses=True)
            stack.push_async_callback(live_redis.aclose)
            await self._remove_leftovers(lock, live_redis)
            await ensure_topics(self.settings, (self.consumer.dead_letter_topic,))
            kafka = await stack.enter_async_context(
                _kafka.reader(self.settings, group_id=self.group, max_partition_fetch_bytes=REPLAY_FETCH_BYTES)
            )
            # End offsets come from a client of their own: on the reader's connection a ListOffsets request waits
            # behind its fetches, which the broker holds up to fetch_max_wait_ms (500) on caught-up partitions.
            self._offsets = await stack.enter_async_context(_kafka.reader(self.settings))
            admin = await stack.enter_async_context(_kafka.admin(self.settings))
            tps = await _kafka.partitions(kafka, self.consumer.handlers)
            await _kafka.partitions(self._offsets, self.consumer.handlers)
            start = await self._start_offsets(kafka, tps)
            ends = await self._ends(tps)
            result = ReplayResult(
                self.consumer.name,
                self.group,
                planned=sum(ends[tp] - start[tp] for tp in tps),
                tables=self.model.tables,
                start={f"{tp.topic}/{tp.partition}": start[tp] for tp in tps},
            )
            kafka.assign(tps)
            for tp, offset in start.items():
                kafka.seek(tp, offset)
            self._positions = dict(start)
            broker = make_broker(self.settings)
            await broker.connect()
            stack.push_async_callback(broker.stop)
            publisher = _DroppingPublisher(broker)
            shadow = await self._prepare_shadow(stack, lock, live_redis, publisher)
            runner = _CountingRunner(self.consumer, shadow, asyncio.Event())
            settle_after_startup()  # as a live consumer does: the collector would otherwise walk every batch often
            swapped = False
            try:
                await self._catch_up(kafka, runner, tps, "build", None)
                if self._late_indexes:
                    self._report("index", self._lag(await self._ends(tps)))
                    await _shadow_pg.create_late_indexes(lock, self._late_indexes)
                    await self._catch_up(kafka, runner, tps, "build", None)
                for table in self.model.tables:  # planner statistics before the first reader plans against it
                    await lock.execute(f"ANALYZE {_shadow_pg.ident(self.shadow_schema)}.{_shadow_pg.ident(table)}")
                await self._swap_pg(live_pg, kafka, runner, tps)
                swapped = True
                if self.model.redis_prefixes:
                    if not self.model.tables:
                        await self._catch_up(kafka, runner, tps, "swap", await self._ends(tps))
                    result.redis_keys = await _shadow_redis.swap(live_redis, self.model.redis_prefixes, self.redis_root)
                    assert isinstance(shadow.redis, _shadow_redis.ShadowRedis)
                    shadow.redis.rewriter.enabled = False
                await self._catch_up(kafka, runner, tps, "drain", await self._ends(tps))
            finally:
                if not swapped:
                    await _shadow_pg.drop_schema(lock, self.shadow_schema)
                    await _shadow_redis.delete_keys(
                        live_redis, await _shadow_redis.keys_under(live_redis, (self.redis_root,))
                    )
                    await _kafka.delete_group(admin, self.group)
            result.offsets_handed_off = await self._hand_off(admin, tps)
            await _shadow_pg.drop_schema(lock, self.old_schema)
            await _shadow_pg.drop_schema(lock, self.shadow_schema)
            await kafka.stop()
            await _kafka.delete_group(admin, self.group)
            result.processed = self.progress.processed
            result.dead_lettered = runner.dead
            result.publishes_dropped = publisher.dropped
            result.seconds = time.monotonic() - self._started
            self._report("done", 0)
            return result

    async def _remove_leftovers(self, conn: asyncpg.Connection, redis_client: aioredis.Redis) -> None:
        """Drop what an interrupted replay of this consumer left (we hold its advisory lock: none is running)."""
        base = _safe(self.consumer.name)
        for schema in await _shadow_pg.schemas_like(conn, f"{base}\\_shadow\\_%"):
            await _shadow_pg.drop_schema(conn, schema)
        for schema in await _shadow_pg.schemas_like(conn, f"{base}\\_old\\_%"):
            await _shadow_pg.drop_schema(conn, schema)
        leftovers = await _shadow_redis.keys_under(redis_client, (f"~replay:{base}:",))
        await _shadow_redis.delete_keys(redis_client, leftovers)

    async def _prepare_shadow(
        self, stack: AsyncExitStack, conn: asyncpg.Connection, live_redis: aioredis.Redis, publisher: Publisher
    ) -> Context:
        """Create the shadow schema and keys; a context whose pg and redis write there."""
        await conn.execute(f"CREATE SCHEMA {_shadow_pg.ident(self.shadow_schema)}")
        for table in self.model.tables:
            source = await _shadow_pg.live_schema(conn, table)
            if source is not None:
                late = frozenset(self.model.reader_indexes)
                self._late_indexes += await _shadow_pg.clone_table(conn, table, source, self.shadow_schema, late)
                if self.from_time is not None:
                    await _shadow_pg.copy_rows(conn, table, source, self.shadow_schema)
        if self.from_time is not None and self.model.redis_prefixes:
            await _shadow_redis.copy_keys(live_redis, self.model.redis_prefixes, self.redis_root)
        pg = await _shadow_pg.pool(self.settings, search_path=f"{_shadow_pg.ident(self.shadow_schema)}, public")
        stack.push_async_callback(pg.close)
        redis_client = await _shadow_redis.shadow_client(
            self.settings.redis_url, self.model.redis_prefixes, self.redis_root
        )
        stack.push_async_callback(redis_client.aclose)
        ctx = Context(settings=self.settings, pg=pg, redis=redis_client, publisher=publisher)
        if self.consumer.setup:
            await self.consumer.setup(ctx, self.consumer)
        for table in self.model.tables:
            found = await conn.fetchval(
                "SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename = $2", self.shadow_schema, table
            )
            if not found:
                raise ReplayError(f"{table} is neither a live table nor created by {self.consumer.name}'s setup")
        return ctx

    async def _ends(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict(await self._offsets.end_offsets(tps))

    def _lag(self, ends: dict[TopicPartition, int], after: dict[TopicPartition, int] | None = None) -> int:
        """Events left to `ends` from the handled positions (updated by `after`, a batch about to be handled)."""
        at = self._positions if after is None else {**self._positions, **after}
        return sum(max(0, end - at.get(tp, 0)) for tp, end in ends.items())

    def _report(self, phase: str, lag: int) -> None:
        elapsed = time.monotonic() - self._started
        self.progress.phase, self.progress.lag = phase, lag
        self.progress.rate = self.progress.processed / elapsed if elapsed > 0 else 0.0
        self.on_progress(self.progress)

    async def _catch_up(
        self,
        kafka: AIOKafkaConsumer,
        runner: _CountingRunner,
        tps: list[TopicPartition],
        phase: str,
        target: dict[TopicPartition, int] | None,
    ) -> None:
        """Consume into the shadow until `target` offsets, or (no target) until within `catch_up_lag` of the end.

        While a batch's handlers wait on PostgreSQL or Redis, the next batch is fetched and decoded (`ahead`): one
        process keeps its own CPU and the store's busy at once. A batch is fetched ahead only when this call will
        handle it, so none is left over when it returns."""
        ends = target or await self._ends(tps)
        refreshed = time.monotonic()
        enough = 0 if target else self.catch_up_lag
        ahead: asyncio.Task[tuple[dict[TopicPartition, list[ConsumerRecord]], Decoded]] | None = None
        try:
            while True:
                lag = self._lag(ends)
                self._report(phase, lag)
                if ahead is None and lag <= enough:
                    if target is not None or time.monotonic() - refreshed < 0.05:
                        return await self._commit(kafka)
                    ends, refreshed = await self._ends(tps), time.monotonic()
                    continue
                batch, decoded = await (ahead or self._fetch(kafka, runner))
                ahead = None
                if batch:
                    done = {tp: part[-1].offset + 1 for tp, part in batch.items()}
                    if self._lag(ends, done) > enough:
                        ahead = asyncio.create_task(self._fetch(kafka, runner))
                    await runner.run_decoded(decoded)
                    self.progress.processed += sum(len(part) for part in batch.values())
                    if phase != "drain" and too_many_dead_letters(runner.dead, self.progress.processed):
                        raise ReplayError(
                            f"{runner.dead} of {self.progress.processed} events dead-lettered (last:"
                            f" {runner.last_dead}); the live model is untouched: fix the cause, then replay again"
                        )
                    self._positions.update(done)
                    if time.monotonic() - self._committed_at > COMMIT_EVERY_S:
                        await self._commit(kafka)
                else:
                    for tp in tps:  # skips over offsets that hold no record (compaction, transaction markers)
                        self._positions[tp] = await kafka.position(tp)
                if target is None and time.monotonic() - refreshed > 1.0:
                    ends, refreshed = await self._ends(tps), time.monotonic()
        finally:
            if ahead is not None:  # only on an error: the replay stops
                ahead.cancel()

    async def _commit(self, kafka: AIOKafkaConsumer) -> None:
        """Commit the handled positions (the replay group's progress, as `chirp lag` shows it)."""
        await kafka.commit(dict(self._positions))
        self._committed_at = time.monotonic()

    async def _fetch(
        self, kafka: AIOKafkaConsumer, runner: Runner
    ) -> tuple[dict[TopicPartition, list[ConsumerRecord]], Decoded]:
        batch = await self._poll(kafka)
        return batch, runner.decode_batch([r for part in batch.values() for r in part])

    async def _poll(self, kafka: AIOKafkaConsumer) -> dict[TopicPartition, list[ConsumerRecord]]:
        """Up to a full batch: what the fetcher holds is taken in one go (one transaction, one pipeline)."""
        size = self.settings.replay_batch_size
        batch = await kafka.getmany(timeout_ms=200, max_records=size)
        count = sum(len(part) for part in batch.values())
        while 0 < count < size:
            more = await kafka.getmany(timeout_ms=0, max_records=size - count)
            if not more:
                break
            for tp, part in more.items():
                batch.setdefault(tp, []).extend(part)
            count += sum(len(part) for part in more.values())
        return batch

    async def _swap_pg(
        self, live_pg: asyncpg.Pool, kafka: AIOKafkaConsumer, runner: _CountingRunner, tps: list[TopicPartition]
    ) -> None:
        """Move the shadow tables in and the live ones out, in one transaction (retried on lock timeouts)."""
        if not self.model.tables:
            return
        q = _shadow_pg.ident
        for attempt in range(1, 6):
            try:
                async with live_pg.acquire() as conn, conn.transaction():
                    await conn.execute("SET LOCAL lock_timeout = '3s'")
                    live = {t: await _shadow_pg.live_schema(conn, t) or "public" for t in self.model.tables}
                    existing = [f"{q(s)}.{q(t)}" for t, s in live.items() if await _shadow_pg.live_schema(conn, t)]
                    if existing:
                        # Readers go on; the live consumer's writes wait until the swap commits.
                        await conn.execute(f"LOCK TABLE {', '.join(existing)} IN SHARE MODE")
                    await self._catch_up(kafka, runner, tps, "swap", await self._ends(tps))
                    await conn.execute(f"CREATE SCHEMA {q(self.old_schema)}")
                    for table, schema in live.items():
                        if f"{q(schema)}.{q(table)}" in existing:
                            await conn.execute(f"ALTER TABLE {q(schema)}.{q(table)} SET SCHEMA {q(self.old_schema)}")
                        await conn.execute(f"ALTER TABLE {q(self.shadow_schema)}.{q(table)} SET SCHEMA {q(schema)}")
                return
            except (asyncpg.LockNotAvailableError, asyncpg.DeadlockDetectedError):
                if attempt == 5:
                    raise
                await asyncio.sleep(0.2 * attempt)

    async def _hand_off(self, admin: Any, tps: list[TopicPartition]) -> bool:
        """Give a stopped or new live group the replay's offsets; a running group keeps its own."""
        state = (await _kafka.group_states(admin, [self.live_group])).get(self.live_group)
        if state is not None and state.active:
            return False
        async with _kafka.reader(self.settings, group_id=self.live_group) as live:
            live.assign(tps)
            await live.commit({tp: self._positions[tp] for tp in tps})
        return True


async def replay(
    settings: Settings,
    name: str,
    *,
    from_time: datetime | None = None,
    dry_run: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
) -> ReplayResult:
    """Replay the consumer `name` (module name or dotted path) and return what happened."""
    job = Replay(settings, resolve(name), from_time=from_time, on_progress=on_progress)
    return await (job.plan() if dry_run else job.run())


async def in_dependency_order(
    consumers: list[Consumer],
    run: Callable[[Consumer], Coroutine[Any, Any, T]],
    jobs: int = 1,
    size: Callable[[Consumer], int] | None = None,
) -> list[T]:
    """`run(consumer)` for every consumer that owns a read model, each once those it reads (`after`) are done, up
    to `jobs` at a time; results in rebuild order. A failure cancels the runs not finished.

    A free slot goes to a ready model that others wait on, else to the one with the most work (`size`, e.g. the
    events it will read), so that the longest runs do not start last and leave the other slots idle at the end."""
    order = rebuild_order(consumers)
    names = {c.name for c in order}
    awaited = {c.name: sum(c.name in read_model_of(other).after for other in order) for c in order}
    work = {c.name: size(c) if size else 0 for c in order}
    pending, finished = list(order), set[str]()
    running: dict[asyncio.Task[T], Consumer] = {}
    results: dict[str, T] = {}
    try:
        while pending or running:
            ready = [c for c in pending if all(u in finished or u not in names for u in read_model_of(c).after)]
            ready.sort(key=lambda c: (-awaited[c.name], -work[c.name], order.index(c)))
            for consumer in ready[: max(1, jobs) - len(running)]:
                pending.remove(consumer)
                running[asyncio.create_task(run(consumer))] = consumer
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                consumer = running.pop(task)
                results[consumer.name] = task.result()  # a failure raises here, as one replay's would
                finished.add(consumer.name)
    finally:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
    return [results[c.name] for c in order]


async def planned_events(settings: Settings, consumers: list[Consumer]) -> dict[str, int]:
    """How many events each consumer's topics hold (what a replay from the beginning reads)."""
    async with _kafka.reader(settings) as kafka:
        planned = {}
        for consumer in consumers:
            tps = await _kafka.partitions(kafka, consumer.handlers)
            start, ends = await kafka.beginning_offsets(tps), await kafka.end_offsets(tps)
            planned[consumer.name] = sum(ends[tp] - start[tp] for tp in tps)
    return planned


async def rebuild_all(
    settings: Settings,
    *,
    dry_run: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
    jobs: int = 1,
) -> list[ReplayResult]:
    """Replay every consumer that owns a read model, upstream models first.

    With `jobs` > 1 up to that many replays run at once, each in a process of its own (`chirp replay NAME
    --progress-json`), so they use as many cores; their progress reports come back here.
    """

    async def in_process(consumer: Consumer) -> ReplayResult:
        job = Replay(settings, consumer, on_progress=on_progress)
        return await (job.plan() if dry_run else job.run())

    async def in_child(consumer: Consumer) -> ReplayResult:
        return await replay_in_child(consumer.name, on_progress)

    consumers = all_consumers()
    planned = await planned_events(settings, rebuild_order(consumers))
    return await in_dependency_order(
        consumers, in_child if jobs > 1 and not dry_run else in_process, jobs, lambda c: planned[c.name]
    )


async def replay_in_child(name: str, on_progress: Callable[[Progress], None] | None = None) -> ReplayResult:
    """`chirp replay NAME` in a child process; its JSON progress lines are passed on, its result returned."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chirp", "replay", name, "--progress-json", stdout=asyncio.subprocess.PIPE
    )
    assert child.stdout is not None
    result = None
    async for line in child.stdout:
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            sys.stderr.write(line.decode(errors="replace"))  # not ours: pass it on
            continue
        if "progress" in message and on_progress:
            on_progress(Progress(**message["progress"]))
        elif "result" in message:
            found = message["result"]
            result = ReplayResult(**{**found, "tables": tuple(found["tables"])})
    if await child.wait() != 0 or result is None:
        raise ReplayError(f"the replay of {name} failed (exit {child.returncode}); its errors are above")
    return result
