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
   lock (so it holds every event any reader could have seen), then takes every live table's exclusive lock at once
   with a short `lock_timeout` (a reader holding one table while waiting for another would otherwise deadlock with
   the swap, and PostgreSQL could fail the reader; the swap is tried again instead) and moves the live tables out
   and the shadow ones in. Redis keys follow in one atomic script, once the shadow has caught up to the end again
   (a model of keys only swaps before, caught up to the end, while PostgreSQL builds the late indexes of the others
   replayed with it). Readers see the old model or the new one, never a half-built one.
3. **Drain**: the live consumer may have applied, into the old tables, events fetched just before the swap; the
   replay group consumes up to the end offsets read after the swap, into the now-live model (handlers are
   idempotent, so events the live consumer also applies are harmless).
4. **Hand off**: a stopped (or never started) live group gets the replay's offsets; a running one keeps its own,
   which are never past what the new model holds. Then the old copy and the replay group are dropped.

Which tables and keys a consumer owns it declares (see `read_model_of`). Handlers run as in production, except
that events they would publish are dropped (a rebuild must not emit events again) and counted, and Redis PUBLISH
commands are not sent (their reply is 0) until the swap.

Several consumers can be replayed together (`chirp replay search trending notifications`, and `rebuild --all` when
more consumers of the same topics are ready than there are free slots): one reader and group, each event
fetched and decoded once, then handed to every consumer that reads its topic, each with its own shadow; the
swap moves all their tables in one transaction, and each live group gets its own hand-off.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import sys
import time
from collections.abc import Callable, Collection, Coroutine, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import asyncpg
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from chirp import redis_client
from chirp.heap import settle_after_startup
from chirp.settings import Settings
from consumers.runtime import (
    Consumer,
    Context,
    Decoded,
    Erased,
    Item,
    Keys,
    ReadModel,
    Rejected,
    Runner,
    all_consumers,
    decode,
    load,
    poll,
)
from ops import _kafka, _shadow_pg, _shadow_redis
from producers.broker import Publisher, ensure_topics, make_broker
from schemas.events import Event
from store.backends import arango_tables

T = TypeVar("T")
# A replay that dead-letters more than this (a bug, a schema the code does not match) stops before its swap.
DEAD_LETTERS_ALLOWED, DEAD_LETTER_SHARE = 100, 0.01
SWAP_LOCK_MS = 100  # the swap's wait for its exclusive locks: well under PostgreSQL's deadlock_timeout (1 s)
SWAP_ATTEMPTS = 10
COMMIT_EVERY_S = 1.0  # the replay group's offsets only show progress: the hand-off uses the handled positions
MEMBER_QUEUE = 2  # batches a member may be behind the reader: enough to keep it busy, each costs RSS
REPLAY_FETCH_BYTES = 1024 * 1024  # per partition and fetch: a backlog batch (2,000 events) at once; more only costs RSS
GC_OBJECTS_PER_EVENT = 20  # tracked objects alive per event in flight: ~8 decoded (record, event, lists), rows


class ReplayError(Exception):
    """A replay that cannot start or finish; the message says why."""


# Tie-break of the rebuild order (dependencies come first regardless): the product's models, upstream first.
DEFAULT_ORDER = ("users", "posts", "timelines", "search", "trending", "notifications", "suggestions")


def read_model_of(consumer: Consumer) -> ReadModel:
    """The read model a consumer declares (`Consumer(tables=, redis_prefixes=, after=, reader_indexes=)`)."""
    return consumer.read_model


def resolve(name: str) -> Consumer:
    """`posts` → consumers.posts.consumer; a dotted path imports that module (as `chirp consume` does)."""
    try:
        return load(name)
    except (AttributeError, TypeError) as exc:
        raise ReplayError(f"{name} declares no `consumer`: {exc}") from None


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
    end: dict[str, int] = field(default_factory=dict)  # "topic/partition" -> end offset when planned (dry runs)
    redis_prefixes: tuple[str, ...] = ()  # the keys the model owns (dry runs)
    collections: tuple[str, ...] = ()  # its ArangoDB collections (CHIRP_STORE=arango), dropped and rebuilt

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


@dataclass
class _Member:
    """One consumer's part in a replay: its shadow schema and keys, and the context and runner writing there."""

    consumer: Consumer
    model: ReadModel  # its PostgreSQL and Redis part
    generation: int
    collections: tuple[str, ...] = ()  # its ArangoDB part: rebuilt in place (see `_reset_collections`)
    tps: list[TopicPartition] = field(default_factory=list)
    late_indexes: list[str] = field(default_factory=list)
    processed: int = 0
    ctx: Context | None = None
    runner: _CountingRunner | None = None
    publisher: _DroppingPublisher | None = None

    @property
    def base(self) -> str:
        return _safe(self.consumer.name)

    @property
    def shadow_schema(self) -> str:
        return f"{self.base}_shadow_{self.generation}"

    @property
    def old_schema(self) -> str:
        return f"{self.base}_old_{self.generation}"

    @property
    def redis_root(self) -> str:
        return f"~replay:{self.base}:{self.generation}:"

    @property
    def topics(self) -> set[str]:
        return set(self.consumer.handlers)


class Replay:
    """One replay of one consumer, or of several at once (see the module docstring); `run()` returns an honest
    `ReplayResult` for each.

    Consumers replayed together share one reader: each event is fetched and decoded once, then every consumer that
    reads its topic handles it into its own shadow, side by side. They must not read each other's models (`after`).
    """

    def __init__(
        self,
        settings: Settings,
        consumers: Consumer | Sequence[Consumer],
        models: ReadModel | Sequence[ReadModel] | None = None,
        *,
        from_time: datetime | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        catch_up_lag: int | None = None,
    ) -> None:
        consumers = [consumers] if isinstance(consumers, Consumer) else list(consumers)
        if models is None:
            models = [read_model_of(c) for c in consumers]
        elif isinstance(models, ReadModel):
            models = [models]
        if not consumers or len(models) != len(consumers):
            raise ReplayError("a replay needs its consumers, and a read model for each")
        names = [c.name for c in consumers]
        if len(set(names)) != len(names):
            raise ReplayError(f"a consumer is named twice in {names}")
        for consumer in consumers:
            needed = set(read_model_of(consumer).after) & set(names)
            if needed:
                raise ReplayError(f"{consumer.name} reads the model of {', '.join(sorted(needed))}: replay it after")
        self.settings = settings
        self.from_time = from_time
        self.on_progress = on_progress or (lambda _: None)
        self.catch_up_lag = settings.consumer_batch_size if catch_up_lag is None else catch_up_lag
        self.generation = time.time_ns() // 1_000_000
        self.members = [self._member_of(c, m) for c, m in zip(consumers, models, strict=True)]
        self.name = "+".join(names)
        self.group = f"{settings.group(self.name)}.replay-{self.generation}"
        self.progress = Progress(self.name, "plan")
        self._positions: dict[TopicPartition, int] = {}
        self._offsets: AIOKafkaConsumer
        self._committed_at = 0.0
        self._started = 0.0
        for m in self.members:
            if any(m.redis_root.startswith(p) or not p for p in m.model.redis_prefixes):
                raise ReplayError(f"redis prefixes {m.model.redis_prefixes} would contain the shadow keys")
            if m.model.redis_prefixes and settings.redis_cluster:  # the swap is one script over every key
                raise ReplayError(
                    f"{m.consumer.name} keeps its read model in Redis, and a replay's atomic swap needs a single"
                    " Redis, not a cluster (docs/scaling.md)"
                )

    def _member_of(self, consumer: Consumer, model: ReadModel) -> _Member:
        """A member whose tables that live in ArangoDB on this store (store/backends.py) are collections instead."""
        collections = arango_tables(self.settings, model.tables)
        tables = tuple(t for t in model.tables if t not in collections)
        pg_part = ReadModel(tables, model.redis_prefixes, model.after, model.reader_indexes)
        return _Member(consumer, pg_part, self.generation, collections)

    def _refuse_empty(self) -> None:
        for m in self.members:
            if m.model.empty and not m.collections:
                raise ReplayError(f"{m.consumer.name} owns no read model: nothing to rebuild")

    async def _reset_collections(self) -> None:
        """Drop and recreate the members' ArangoDB collections, which their handlers then fill from the log. Unlike
        PostgreSQL's tables there is no shadow to swap in: readers see the model refill (the live consumer goes on
        writing into it, as idempotently as the replay)."""
        from store.arango import connect_arango, reset_collections

        collections = [name for m in self.members for name in m.collections]
        if collections:
            await asyncio.to_thread(lambda: reset_collections(connect_arango(self.settings), collections))

    # Planning ------------------------------------------------------------------------------------------------

    async def _start_offsets(self, kafka: AIOKafkaConsumer, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        if self.from_time is None:
            return dict(await kafka.beginning_offsets(tps))
        ends = await kafka.end_offsets(tps)
        found = await kafka.offsets_for_times({tp: int(self.from_time.timestamp() * 1000) for tp in tps})
        return {tp: found[tp].offset if found.get(tp) else ends[tp] for tp in tps}

    async def _partitions(self, kafka: AIOKafkaConsumer) -> list[TopicPartition]:
        """Every partition any member reads (each member's own in `tps`)."""
        tps = await _kafka.partitions(kafka, sorted({t for m in self.members for t in m.topics}))
        for m in self.members:
            m.tps = [tp for tp in tps if tp.topic in m.topics]
        return tps

    def _results(self, start: dict[TopicPartition, int], ends: dict[TopicPartition, int]) -> list[ReplayResult]:
        return [
            ReplayResult(
                m.consumer.name,
                self.group,
                planned=sum(ends[tp] - start[tp] for tp in m.tps),
                tables=m.model.tables,
                collections=m.collections,
                start={f"{tp.topic}/{tp.partition}": start[tp] for tp in m.tps},
            )
            for m in self.members
        ]

    async def plan(self) -> list[ReplayResult]:
        """What a replay would do, without doing it (`--dry-run`): refused as `run()` refuses it."""
        self._refuse_empty()
        async with _kafka.reader(self.settings) as kafka:
            tps = await self._partitions(kafka)
            start = await self._start_offsets(kafka, tps)
            ends = await kafka.end_offsets(tps)
        results = self._results(start, ends)
        for m, result in zip(self.members, results, strict=True):
            result.dry_run = True
            result.end = {f"{tp.topic}/{tp.partition}": ends[tp] for tp in m.tps}
            result.redis_prefixes = m.model.redis_prefixes
        return results

    # Running -------------------------------------------------------------------------------------------------

    async def run(self) -> list[ReplayResult]:
        """Build, swap, drain, hand off, clean up; raises ReplayError (the live models untouched) on failure."""
        self._refuse_empty()
        self._started = time.monotonic()
        async with AsyncExitStack() as stack:
            live_pg = await _shadow_pg.pool(self.settings, max_size=3)
            stack.push_async_callback(live_pg.close)
            lock = await stack.enter_async_context(live_pg.acquire())
            stack.push_async_callback(lock.execute, "SELECT pg_advisory_unlock_all()")
            for m in sorted(self.members, key=lambda m: m.consumer.name):
                if not await lock.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", f"replay:{m.consumer.name}"):
                    raise ReplayError(f"another replay of {m.consumer.name} is running")
            live_redis = redis_client.connect(self.settings, decode_responses=True)
            stack.push_async_callback(live_redis.aclose)
            for m in self.members:
                await self._remove_leftovers(m, lock, live_redis)
            await ensure_topics(self.settings, tuple(m.consumer.dead_letter_topic for m in self.members))
            kafka = await stack.enter_async_context(
                _kafka.reader(self.settings, group_id=self.group, max_partition_fetch_bytes=REPLAY_FETCH_BYTES)
            )
            # End offsets come from a client of their own: on the reader's connection a ListOffsets request waits
            # behind its fetches, which the broker holds up to fetch_max_wait_ms (500) on caught-up partitions.
            self._offsets = await stack.enter_async_context(_kafka.reader(self.settings))
            admin = await stack.enter_async_context(_kafka.admin(self.settings))
            tps = await self._partitions(kafka)
            await _kafka.partitions(self._offsets, sorted({tp.topic for tp in tps}))
            start = await self._start_offsets(kafka, tps)
            results = self._results(start, await self._ends(tps))
            kafka.assign(tps)
            for tp, offset in start.items():
                kafka.seek(tp, offset)
            self._positions = dict(start)
            broker = make_broker(self.settings)
            await broker.connect()
            stack.push_async_callback(broker.stop)
            await self._reset_collections()
            for m in self.members:
                m.publisher = _DroppingPublisher(broker)
                m.ctx = await self._prepare_shadow(m, stack, lock, live_redis, m.publisher)
                m.runner = _CountingRunner(m.consumer, m.ctx, asyncio.Event())
            # As a live consumer does, with room for the batches in flight (one read, MEMBER_QUEUE queued, one
            # handled): with the live 10,000, young collections walked them ~350 times per 600K events (3 s).
            in_flight = (MEMBER_QUEUE + 2) * self.settings.replay_batch_size
            settle_after_startup(young=max(10_000, GC_OBJECTS_PER_EVENT * in_flight))
            swapped = False
            try:
                await self._catch_up(kafka, tps, "build", None)
                late = [index for m in self.members for index in m.late_indexes]
                keys_only = [(m, r) for m, r in zip(self.members, results, strict=True) if not m.model.tables]
                if late or keys_only:
                    if keys_only:  # swapped now, while PostgreSQL builds the late indexes (Redis is idle then)
                        await self._catch_up(kafka, tps, "swap", await self._ends(tps))
                    self._report("index" if late else "swap", self._lag(await self._ends(tps)))
                    await asyncio.gather(
                        _shadow_pg.create_late_indexes(live_pg, late), self._swap_redis(live_redis, keys_only)
                    )
                    await self._catch_up(kafka, tps, "build", None)
                for m in self.members:  # planner statistics before the first reader plans against it
                    for table in m.model.tables:
                        await lock.execute(f"ANALYZE {_shadow_pg.ident(m.shadow_schema)}.{_shadow_pg.ident(table)}")
                await self._swap_pg(live_pg, kafka, tps)
                swapped = True
                # Their Redis keys follow, caught up to the end once more (the swap above may have taken a while).
                with_tables = [(m, r) for m, r in zip(self.members, results, strict=True) if m.model.tables]
                if any(m.model.redis_prefixes for m, _ in with_tables):
                    await self._catch_up(kafka, tps, "swap", await self._ends(tps))
                    await self._swap_redis(live_redis, with_tables)
                await self._catch_up(kafka, tps, "drain", await self._ends(tps))
            finally:
                if not swapped:
                    for m in self.members:
                        await _shadow_pg.drop_schema(lock, m.shadow_schema)
                        if m.model.redis_prefixes:
                            shadow_keys = await _shadow_redis.keys_under(live_redis, (m.redis_root,))
                            await _shadow_redis.delete_keys(live_redis, shadow_keys)
                            await live_redis.srem(_shadow_redis.ROOTS, m.redis_root)
            for m, result in zip(self.members, results, strict=True):
                assert m.runner is not None and m.publisher is not None
                result.offsets_handed_off = await self._hand_off(admin, m)
                await _shadow_pg.drop_schema(lock, m.old_schema)
                await _shadow_pg.drop_schema(lock, m.shadow_schema)
                result.processed = m.processed
                result.dead_lettered = m.runner.dead
                result.publishes_dropped = m.publisher.dropped
            await kafka.stop()
            await _kafka.delete_group(admin, self.group)
            for result in results:
                result.seconds = time.monotonic() - self._started
            self._report("done", 0)
            return results

    async def _swap_redis(self, live_redis: aioredis.Redis, swapping: list[tuple[_Member, ReplayResult]]) -> None:
        """Move these members' shadow keys over their live ones (each in one atomic script); from then on their
        handlers write the live keys, and their PUBLISH commands are sent again. No batch is being handled: the
        caller has caught them up."""
        for m, result in swapping:
            if m.model.redis_prefixes:
                assert m.ctx is not None and isinstance(m.ctx.redis, _shadow_redis.ShadowRedis)
                async with m.ctx.redis.gate.closed():  # (a background task's commands wait meanwhile)
                    # What readers get that a handler does not write (trending's rankings) is completed first,
                    # from the caught-up shadow, so the model is whole when it becomes visible.
                    if m.consumer.before_swap is not None:
                        await m.consumer.before_swap(m.ctx, live_redis, m.redis_root)
                    result.redis_keys = await _shadow_redis.swap(live_redis, m.model.redis_prefixes, m.redis_root)
                    m.ctx.redis.rewriter.enabled = False
                await live_redis.srem(_shadow_redis.ROOTS, m.redis_root)  # no key is left under it

    async def _remove_leftovers(self, m: _Member, conn: asyncpg.Connection, redis_client: aioredis.Redis) -> None:
        """Drop what an interrupted replay of this consumer left (we hold its advisory lock: none is running)."""
        for schema in await _shadow_pg.schemas_like(conn, f"{m.base}\\_shadow\\_%"):
            await _shadow_pg.drop_schema(conn, schema)
        for schema in await _shadow_pg.schemas_like(conn, f"{m.base}\\_old\\_%"):
            await _shadow_pg.drop_schema(conn, schema)
        for root in map(str, await redis_client.smembers(_shadow_redis.ROOTS)):  # (a client that decodes)
            if root.startswith(f"~replay:{m.base}:"):
                await _shadow_redis.delete_keys(redis_client, await _shadow_redis.keys_under(redis_client, (root,)))
                await redis_client.srem(_shadow_redis.ROOTS, root)

    async def _prepare_shadow(
        self,
        m: _Member,
        stack: AsyncExitStack,
        conn: asyncpg.Connection,
        live_redis: aioredis.Redis,
        publisher: Publisher,
    ) -> Context:
        """Create a member's shadow schema and keys; a context whose pg and redis write there."""
        await conn.execute(f"CREATE SCHEMA {_shadow_pg.ident(m.shadow_schema)}")
        for table in m.model.tables:
            source = await _shadow_pg.live_schema(conn, table)
            if source is not None:
                late = frozenset(m.model.reader_indexes)
                m.late_indexes += await _shadow_pg.clone_table(conn, table, source, m.shadow_schema, late)
                if self.from_time is not None:
                    await _shadow_pg.copy_rows(conn, table, source, m.shadow_schema)
        if m.model.redis_prefixes:  # before any key is written under the root
            await live_redis.sadd(_shadow_redis.ROOTS, m.redis_root)
        if self.from_time is not None and m.model.redis_prefixes:
            await _shadow_redis.copy_keys(live_redis, m.model.redis_prefixes, m.redis_root)
        pg = await _shadow_pg.pool(self.settings, search_path=f"{_shadow_pg.ident(m.shadow_schema)}, public")
        stack.push_async_callback(pg.close)
        redis_client = await _shadow_redis.shadow_client(self.settings.redis_url, m.model.redis_prefixes, m.redis_root)
        stack.push_async_callback(redis_client.aclose)
        ctx = Context(settings=self.settings, pg=pg, redis=redis_client, publisher=publisher)
        if m.consumer.setup:
            await m.consumer.setup(ctx, m.consumer)
        for table in m.model.tables:
            found = await conn.fetchval(
                "SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename = $2", m.shadow_schema, table
            )
            if not found:
                raise ReplayError(f"{table} is neither a live table nor created by {m.consumer.name}'s setup")
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
        self, kafka: AIOKafkaConsumer, tps: list[TopicPartition], phase: str, target: dict[TopicPartition, int] | None
    ) -> None:
        """Consume into the shadows until `target` offsets, or (no target) until within `catch_up_lag` of the end.

        One task reads and decodes; each member handles its part of every batch in a task of its own, up to
        `MEMBER_QUEUE` batches behind the reader. So while a member's handlers wait on PostgreSQL or Redis, the
        next batch is fetched and decoded and the other members work: one process keeps its own CPU and the stores
        busy at once, and no member waits for a slower one batch by batch. Returns once every member has handled
        every batch read (a failing member stops the replay)."""
        queues: list[asyncio.Queue[Decoded | None]] = [asyncio.Queue(MEMBER_QUEUE) for _ in self.members]
        try:
            async with asyncio.TaskGroup() as tasks:
                for m, queue in zip(self.members, queues, strict=True):
                    tasks.create_task(self._member(m, queue, check=phase != "drain"))
                await self._read(kafka, tps, phase, target, queues)  # on a failure the group cancels the rest
                for queue in queues:
                    await queue.put(None)
        except ExceptionGroup as failed:
            raise failed.exceptions[0] from None
        await self._commit(kafka)

    async def _read(
        self,
        kafka: AIOKafkaConsumer,
        tps: list[TopicPartition],
        phase: str,
        target: dict[TopicPartition, int] | None,
        queues: list[asyncio.Queue[Decoded | None]],
    ) -> None:
        """Fetch and decode batches up to `target` (or near the end), each member's part into its queue."""
        ends = target or await self._ends(tps)
        refreshed = time.monotonic()
        enough = 0 if target else self.catch_up_lag
        while True:
            lag = self._lag(ends)
            self._report(phase, lag)
            if lag <= enough:
                if target is not None or time.monotonic() - refreshed < 0.05:
                    return
                ends, refreshed = await self._ends(tps), time.monotonic()
                continue
            batch = await self._poll(kafka)
            if batch:
                runner = self.members[0].runner
                assert runner is not None
                keys = await runner.load_keys([r for part in batch.values() for r in part])
                for queue, view in zip(queues, self._decode(batch, keys), strict=True):
                    if view.by_topic or view.rejected:
                        await queue.put(view)
                self.progress.processed += sum(len(part) for part in batch.values())
                self._positions.update({tp: part[-1].offset + 1 for tp, part in batch.items()})
                if time.monotonic() - self._committed_at > COMMIT_EVERY_S:
                    await self._commit(kafka)
            else:
                for tp in tps:  # skips over offsets that hold no record (compaction, transaction markers)
                    self._positions[tp] = await kafka.position(tp)
            if target is None and time.monotonic() - refreshed > 1.0:
                ends, refreshed = await self._ends(tps), time.monotonic()

    async def _member(self, m: _Member, queue: asyncio.Queue[Decoded | None], *, check: bool) -> None:
        """A member's handlers over its parts of the batches, in order, until the reader is done."""
        assert m.runner is not None
        while (view := await queue.get()) is not None:
            await m.runner.run_decoded(view)
            m.processed += sum(len(items) for items in view.by_topic.values()) + len(view.rejected)
            if check and too_many_dead_letters(m.runner.dead, m.processed):
                raise ReplayError(
                    f"{m.consumer.name}: {m.runner.dead} of {m.processed} events dead-lettered (last:"
                    f" {m.runner.last_dead}); the live models are untouched: fix the cause, then replay again"
                )

    async def _commit(self, kafka: AIOKafkaConsumer) -> None:
        """Commit the handled positions (the replay group's progress, as `chirp lag` shows it)."""
        await kafka.commit(dict(self._positions))
        self._committed_at = time.monotonic()

    def _decode(self, batch: dict[TopicPartition, list[ConsumerRecord]], keys: Keys) -> list[Decoded]:
        """A batch decoded once per topic and event model, then split into each member's part (events are frozen,
        so members share them)."""
        by_topic: dict[str, list[ConsumerRecord]] = {}
        for tp, part in batch.items():
            by_topic.setdefault(tp.topic, []).extend(part)
        views = [Decoded({}, []) for _ in self.members]
        for topic, records in by_topic.items():
            decoded: dict[type[Event], tuple[list[Item], list[tuple[ConsumerRecord, Rejected]]]] = {}
            for m, view in zip(self.members, views, strict=True):
                handler = m.consumer.handlers.get(topic)
                if handler is None:
                    continue
                if handler.model not in decoded:
                    decoded[handler.model] = _decode_records(records, handler.model, keys)
                items, rejected = decoded[handler.model]
                if items:
                    view.by_topic[topic] = items
                view.rejected.extend(rejected)
        return views

    async def _poll(self, kafka: AIOKafkaConsumer) -> dict[TopicPartition, list[ConsumerRecord]]:
        """Up to a full batch, as a live consumer takes one (consumers/runtime/polling.py)."""
        return await poll(kafka, self.settings.replay_batch_size, 200)

    async def _swap_pg(self, live_pg: asyncpg.Pool, kafka: AIOKafkaConsumer, tps: list[TopicPartition]) -> None:
        """Move every member's shadow tables in and live ones out, in one transaction (retried on lock timeouts)."""
        owned = [(m, table) for m in self.members for table in m.model.tables]
        if not owned:
            return
        q = _shadow_pg.ident
        for attempt in range(1, SWAP_ATTEMPTS + 1):
            try:
                async with live_pg.acquire() as conn, conn.transaction():
                    await conn.execute("SET LOCAL lock_timeout = '3s'")
                    live = [(m, table, await _shadow_pg.live_schema(conn, table)) for m, table in owned]
                    existing = [f"{q(schema)}.{q(table)}" for _, table, schema in live if schema]
                    if existing:
                        # Readers go on; the live consumers' writes wait until the swap commits.
                        await conn.execute(f"LOCK TABLE {', '.join(existing)} IN SHARE MODE")
                    await self._catch_up(kafka, tps, "swap", await self._ends(tps))
                    if existing:
                        # Every live table at once, giving up quickly: a reader holding one of them while it waits
                        # for another would deadlock with the swap, and PostgreSQL might fail the reader. Readers
                        # wait at most this long; the swap is tried again.
                        await conn.execute(f"SET LOCAL lock_timeout = '{SWAP_LOCK_MS}ms'")
                        await conn.execute(f"LOCK TABLE {', '.join(existing)} IN ACCESS EXCLUSIVE MODE")
                    for m in [m for m in self.members if m.model.tables]:
                        await conn.execute(f"CREATE SCHEMA {q(m.old_schema)}")
                    for m, table, schema in live:
                        if schema:
                            await conn.execute(f"ALTER TABLE {q(schema)}.{q(table)} SET SCHEMA {q(m.old_schema)}")
                        target = q(schema or "public")
                        await conn.execute(f"ALTER TABLE {q(m.shadow_schema)}.{q(table)} SET SCHEMA {target}")
                return
            except (asyncpg.LockNotAvailableError, asyncpg.DeadlockDetectedError):
                if attempt == SWAP_ATTEMPTS:
                    raise
                await asyncio.sleep(0.2 * attempt)

    async def _hand_off(self, admin: Any, m: _Member) -> bool:
        """Give a member's stopped or new live group the replay's offsets; a running group keeps its own."""
        live_group = self.settings.group(m.consumer.name)
        state = (await _kafka.group_states(admin, [live_group])).get(live_group)
        if state is not None and state.active:
            return False
        async with _kafka.reader(self.settings, group_id=live_group) as live:
            live.assign(m.tps)
            await live.commit({tp: self._positions[tp] for tp in m.tps})
        return True


def _decode_records(
    records: list[ConsumerRecord], model: type[Event], keys: Keys
) -> tuple[list[Item], list[tuple[ConsumerRecord, Rejected]]]:
    """Items and rejects; a record of an erased key is neither (as if never written)."""
    items, rejected = [], []
    for record in records:
        try:
            items.append(Item(record, decode(record, model, keys)))
        except Rejected as exc:
            rejected.append((record, exc))
        except Erased:
            continue
    return items, rejected


async def replay(
    settings: Settings,
    names: str | Sequence[str],
    *,
    from_time: datetime | None = None,
    dry_run: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
) -> list[ReplayResult]:
    """Replay the consumers `names` (module names or dotted paths) together and return what happened to each."""
    consumers = [resolve(name) for name in ([names] if isinstance(names, str) else names)]
    job = Replay(settings, consumers, from_time=from_time, on_progress=on_progress)
    return await (job.plan() if dry_run else job.run())


def _topics(group: list[Consumer]) -> set[str]:
    return {topic for consumer in group for topic in consumer.handlers}


def _events(topics: set[str], topic_events: Mapping[str, int]) -> int:
    return sum(topic_events.get(topic, 0) for topic in topics)


def together(
    ready: list[Consumer], slots: int, topic_events: Mapping[str, int], alone: Collection[str] = ()
) -> list[list[Consumer]]:
    """Ready consumers in groups for `slots` replays: while there are more groups than slots, the two that share
    the most events (counts by topic in `topic_events`) become one. Groups that share nothing stay apart, and so
    do the consumers named in `alone` (those others wait on: a group takes longer than one of its members)."""
    groups = [[c] for c in ready]
    mergeable = [g for g in groups if g[0].name not in alone]
    while len(groups) > max(1, slots) and len(mergeable) > 1:
        pairs = [(a, b) for i, a in enumerate(mergeable) for b in mergeable[i + 1 :]]
        first, second = max(pairs, key=lambda p: _events(_topics(p[0]) & _topics(p[1]), topic_events))
        if not _events(_topics(first) & _topics(second), topic_events):
            break
        first += second
        groups.remove(second)
        mergeable.remove(second)
    return groups


async def in_dependency_order(
    consumers: list[Consumer],
    run: Callable[[list[Consumer]], Coroutine[Any, Any, list[T]]],
    jobs: int = 1,
    topic_events: Mapping[str, int] | None = None,
) -> list[T]:
    """`run(group)` for every consumer that owns a read model, each once those it reads (`after`) are done, up to
    `jobs` groups at a time; one result per consumer, in rebuild order. A failure cancels the runs not finished.

    Consumers ready at once, more than there are free slots, are replayed together where they read the same
    topics (`together`): one reader, each event fetched and decoded once. A free slot goes to a ready group that
    others wait on, else to the one with the most work (the events it reads), so that the longest runs do not
    start last and leave the other slots idle at the end."""
    order = rebuild_order(consumers)
    names = {c.name for c in order}
    events = topic_events or {}
    awaited = {c.name: sum(c.name in read_model_of(other).after for other in order) for c in order}
    pending, finished = list(order), set[str]()
    running: dict[asyncio.Task[list[T]], list[Consumer]] = {}
    results: dict[str, T] = {}
    try:
        while pending or running:
            slots = max(1, jobs) - len(running)
            ready = [c for c in pending if all(u in finished or u not in names for u in read_model_of(c).after)]
            waited_on = {u for c in pending for u in read_model_of(c).after}
            found = together(ready, slots, events, waited_on) if slots > 0 else []
            groups = [sorted(g, key=order.index) for g in found]
            groups.sort(
                key=lambda g: (-sum(awaited[c.name] for c in g), -_events(_topics(g), events), order.index(g[0]))
            )
            for group in groups[:slots]:
                for consumer in group:
                    pending.remove(consumer)
                running[asyncio.create_task(run(group))] = group
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                group = running.pop(task)
                for consumer, result in zip(group, task.result(), strict=True):  # a failure raises here
                    results[consumer.name] = result
                    finished.add(consumer.name)
    finally:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
    return [results[c.name] for c in order]


async def events_by_topic(settings: Settings, consumers: list[Consumer]) -> dict[str, int]:
    """How many events each topic the consumers read holds (what a replay from the beginning reads)."""
    async with _kafka.reader(settings) as kafka:
        tps = await _kafka.partitions(kafka, sorted(_topics(consumers)))
        start, ends = await kafka.beginning_offsets(tps), await kafka.end_offsets(tps)
    counts: dict[str, int] = {}
    for tp in tps:
        counts[tp.topic] = counts.get(tp.topic, 0) + ends[tp] - start[tp]
    return counts


async def rebuild_all(
    settings: Settings,
    *,
    dry_run: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
    jobs: int = 1,
) -> list[ReplayResult]:
    """Replay every consumer that owns a read model, upstream models first (see `in_dependency_order`).

    With `jobs` > 1 up to that many replays run at once, each in a process of its own (`chirp replay NAME...
    --progress-json`), so they use as many cores; their progress reports come back here.
    """

    async def in_process(group: list[Consumer]) -> list[ReplayResult]:
        job = Replay(settings, group, on_progress=on_progress)
        return await (job.plan() if dry_run else job.run())

    async def in_child(group: list[Consumer]) -> list[ReplayResult]:
        return await replay_in_child([c.name for c in group], on_progress)

    consumers = all_consumers()
    events = await events_by_topic(settings, rebuild_order(consumers))
    return await in_dependency_order(consumers, in_child if jobs > 1 and not dry_run else in_process, jobs, events)


async def replay_in_child(
    names: Sequence[str], on_progress: Callable[[Progress], None] | None = None
) -> list[ReplayResult]:
    """`chirp replay NAME... --progress-json` in a child process; its JSON progress lines are passed on, its results
    returned."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ops", "replay", *names, "--progress-json", stdout=asyncio.subprocess.PIPE
    )
    assert child.stdout is not None
    results = None
    async for line in child.stdout:
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            sys.stderr.write(line.decode(errors="replace"))  # not ours: pass it on
            continue
        if "progress" in message and on_progress:
            on_progress(Progress(**message["progress"]))
        elif "results" in message:
            results = [
                ReplayResult(**{**found, "tables": tuple(found["tables"]), "collections": tuple(found["collections"])})
                for found in message["results"]
            ]
    if await child.wait() != 0 or results is None:
        raise ReplayError(f"the replay of {' '.join(names)} failed (exit {child.returncode}); its errors are above")
    return results
