"""What a consumer module declares: its `Consumer` (group name, read model, handlers by topic, setup) and how the
runtime finds them (`load`, `all_consumers`)."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from schemas import topics
from schemas.events import BY_TOPIC, Event

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from consumers.runtime.context import Context

E = TypeVar("E", bound=Event)
Setup = Callable[["Context", "Consumer"], Awaitable[None]]
# Called by a replay just before its shadow Redis keys go live, with the swap held: `(ctx, live_client, root)`,
# the keys still named under the shadow `root`; it completes what readers get that no handler writes.
BeforeSwap = Callable[["Context", "aioredis.Redis", str], Awaitable[None]]


class PermanentError(Exception):
    """Raised by a handler for an event that can never succeed: dead-lettered without retries."""


@dataclass(frozen=True)
class Handler(Generic[E]):
    topic: topics.Topic
    fn: Callable[..., Awaitable[None]]
    batch: bool
    model: type[Event]


@dataclass(frozen=True)
class ReadModel:
    """What a consumer owns, for `chirp replay` / `rebuild --all`: PostgreSQL tables, Redis key prefixes, the
    consumers whose models it reads (rebuilt before it), and indexes only readers use (built once the rows are in)."""

    tables: tuple[str, ...] = ()
    redis_prefixes: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    reader_indexes: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.tables and not self.redis_prefixes


@dataclass
class Consumer:
    """One consumer group: its name, its read model, its handlers by topic, and optional setup run once at start."""

    name: str
    description: str = ""
    # The read model it owns (see `ReadModel`); the replay (ops/replay.py) reads it from here.
    tables: tuple[str, ...] = ()
    redis_prefixes: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    # Indexes of its tables that only readers use, never its handlers: a replay builds them once the rows are in,
    # in one sorted pass, instead of keeping them up row by row (full-text and array indexes always are).
    reader_indexes: tuple[str, ...] = ()
    handlers: dict[str, Handler[Any]] = field(default_factory=dict)
    setup: Setup | None = None
    before_swap: BeforeSwap | None = None
    # Handlers that share state inside the process: one process per group, enforced with a lease (lease.py).
    single_process: bool = False
    # Nobody waits on its writes by the millisecond (an index, counters, timelines): while events keep coming, Kafka
    # holds its fetches up to `consumer_gather_ms` to gather batches, so it makes fewer requests, statements and
    # round trips per event. "brief": up to `consumer_brief_gather_ms`, for models read within tens of ms.
    gather: bool | Literal["brief"] = False

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

    def on_before_swap(self, fn: BeforeSwap) -> BeforeSwap:
        """Register `fn(ctx, client, root)`, run by a replay just before this consumer's shadow keys go live."""
        self.before_swap = fn
        return fn

    @property
    def read_model(self) -> ReadModel:
        return ReadModel(tuple(self.tables), tuple(self.redis_prefixes), tuple(self.after), tuple(self.reader_indexes))

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
    import consumers as package

    names = [m.name for m in pkgutil.iter_modules(package.__path__) if m.name != "markdown" and not m.ispkg]
    found = []
    for name in names:
        module = importlib.import_module(f"consumers.{name}")
        if isinstance(getattr(module, "consumer", None), Consumer):
            found.append(module.consumer)
    return found
