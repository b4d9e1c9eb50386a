"""`chirp dlq`: the dead-lettered events of every consumer, and the decisions taken on them.

Dead letters are the `dead-letters-<consumer>` topics the runtime writes (original key, value and headers, plus
`dlq_*` headers). A decision (`retried` or `dropped`) is a record in the compacted `dlq-decisions` topic keyed by
the letter's id, so `list` hides handled letters and the history stays in Kafka with everything else.

A retry goes to the one group that failed: to its `retry-<consumer>` topic, which only that group reads (the
runtime hands such a record to the handler of the topic it was first published to, see
`consumers.runtime.retried_record`), never to the shared topic. A letter whose event fails validation again is
not retried: it stays pending, to be dropped (or fixed by a consumer that reads it).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import orjson
from aiokafka import ConsumerRecord
from aiokafka.admin import NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from chirp.settings import Settings
from consumers.runtime import Erased, Keys, Rejected, all_consumers, decode, load_keys
from ops import _kafka
from producers.broker import Publisher, ensure_topics, make_broker
from schemas import topics
from schemas.events import BY_TOPIC, BY_TYPE, Event
from store.keys import PgKeyStore
from store.postgres import connect

DECISIONS_TOPIC = f"{topics.NAMESPACE}dlq-decisions"
RETRY_HEADER = "dlq_retry_of"


@dataclass(frozen=True)
class Letter:
    consumer: str
    partition: int  # of the dead-letter topic
    offset: int  # of the dead-letter topic
    key: bytes | None
    value: bytes
    headers: dict[str, str]
    decision: str | None = None  # "retried" / "dropped" once handled
    copies: int = 1  # the same original record dead-lettered again (a replay, a redelivery) counts here

    @property
    def id(self) -> str:
        """Stable id: `<consumer>:<partition>:<offset>` in the dead-letter topic."""
        return f"{self.consumer}:{self.partition}:{self.offset}"

    @property
    def origin(self) -> tuple[str, str, str]:
        """The dead-lettered record's topic, partition and offset."""
        return tuple(self.headers.get(f"dlq_{k}", "") for k in ("topic", "partition", "offset"))  # type: ignore[return-value]

    @property
    def reason(self) -> str:
        return self.headers.get("dlq_reason", "")

    @property
    def error(self) -> str:
        return self.headers.get("dlq_error", "")

    @property
    def attempts(self) -> int:
        return int(self.headers.get("dlq_attempts", "0") or 0)

    @property
    def at(self) -> datetime | None:
        raw = self.headers.get("dlq_at")
        return datetime.fromisoformat(raw) if raw else None

    @property
    def original_headers(self) -> dict[str, str]:
        """The headers the event was published with (the runtime's `dlq_*` ones removed)."""
        return {k: v for k, v in self.headers.items() if not k.startswith("dlq_")}


async def ensure_decisions_topic(settings: Settings) -> None:
    """Create the compacted decisions topic if it does not exist."""
    async with _kafka.admin(settings) as client:
        if DECISIONS_TOPIC in await client.list_topics():
            return
        factor, min_isr = await _kafka.topic_replication(client)
        configs = {"cleanup.policy": "compact", "min.insync.replicas": str(min_isr)}
        topic = NewTopic(DECISIONS_TOPIC, 1, factor, topic_configs=configs)
        with contextlib.suppress(TopicAlreadyExistsError):  # created meanwhile by another process
            await client.create_topics([topic])


async def _read_all(settings: Settings, names: list[str]) -> list[object]:
    """Every record of the named topics, from the first offset to the end offset read at the start."""
    records: list[object] = []
    async with _kafka.reader(settings) as kafka:
        tps = await _kafka.partitions(kafka, names)
        if not tps:
            return records
        ends = await kafka.end_offsets(tps)
        kafka.assign(tps)
        await kafka.seek_to_beginning(*tps)
        todo = {tp for tp in tps if ends[tp] > 0}
        while todo:
            for tp, part in (await kafka.getmany(*todo, timeout_ms=500)).items():
                records.extend(r for r in part if r.offset < ends[tp])
                if part and part[-1].offset >= ends[tp] - 1:
                    todo.discard(tp)
            for tp in list(todo):
                if await kafka.position(tp) >= ends[tp]:
                    todo.discard(tp)
    return records


async def decisions(settings: Settings) -> dict[str, str]:
    """Letter id → the latest decision taken on it."""
    found: dict[str, str] = {}
    for record in await _read_all(settings, [DECISIONS_TOPIC]):
        if record.key is not None:  # type: ignore[attr-defined]
            value = record.value  # type: ignore[attr-defined]
            found[record.key.decode()] = orjson.loads(value)["decision"] if value else ""  # type: ignore[attr-defined]
    return {k: v for k, v in found.items() if v}


async def letters(settings: Settings, consumer: str | None = None, *, handled: bool = False) -> list[Letter]:
    """Dead letters, oldest first: the pending ones (and, with `handled`, those retried or dropped too).

    A record dead-lettered more than once (by a replay, or redelivered after a crash) is one letter: the latest.
    """
    async with _kafka.admin(settings) as client:
        names = sorted(
            n
            for n in await client.list_topics()
            if n.startswith(topics.DEAD_LETTER_PREFIX) and (consumer is None or n == topics.dead_letters(consumer).name)
        )
    taken = await decisions(settings)
    latest: dict[tuple[str, tuple[str, str, str]], Letter] = {}
    for record in await _read_all(settings, names):
        headers = {k: v.decode(errors="replace") for k, v in record.headers or ()}  # type: ignore[attr-defined]
        name = headers.get("dlq_consumer") or record.topic.removeprefix(topics.DEAD_LETTER_PREFIX)  # type: ignore[attr-defined]
        letter = Letter(name, record.partition, record.offset, record.key, record.value or b"", headers)  # type: ignore[attr-defined]
        previous = latest.get((name, letter.origin))
        copies = previous.copies + 1 if previous else 1
        latest[(name, letter.origin)] = replace(letter, decision=taken.get(letter.id), copies=copies)
    found = sorted(latest.values(), key=lambda x: (x.at or datetime.min.replace(tzinfo=UTC), x.id))
    return [x for x in found if handled or x.decision is None]


async def _decide(publisher: Publisher, letter: Letter, decision: str, note: str) -> None:
    body = {"decision": decision, "at": datetime.now(UTC).isoformat(), "note": note, "consumer": letter.consumer}
    await publisher.publish_raw(DECISIONS_TOPIC, letter.id.encode(), orjson.dumps(body), {})


@asynccontextmanager
async def publishing(settings: Settings) -> AsyncIterator[Publisher]:
    """A publisher for decisions and retries (the decisions topic created first)."""
    await ensure_decisions_topic(settings)
    broker = make_broker(settings)
    await broker.connect()
    try:
        yield Publisher(broker)
    finally:
        await broker.stop()


async def drop(settings: Settings, chosen: list[Letter], note: str = "") -> int:
    """Record that these letters will not be retried (`list` hides them from then on)."""
    async with publishing(settings) as publisher:
        for letter in chosen:
            await _decide(publisher, letter, "dropped", note)
    return len(chosen)


def _model(letter: Letter) -> type[Event] | None:
    """The model the letter's consumer decodes its original topic with (None when it does not read that topic).
    For a consumer not under `consumers/` (a test's probe): the model of that topic, or of the event's type."""
    topic = letter.headers.get("dlq_topic", "")
    for consumer in all_consumers():
        if consumer.name == letter.consumer:
            return consumer.handlers[topic].model if topic in consumer.handlers else None
    if topic in BY_TOPIC:
        return BY_TOPIC[topic]
    with contextlib.suppress(orjson.JSONDecodeError, AttributeError, TypeError):
        return BY_TYPE.get(orjson.loads(letter.value).get("type"))
    return None


def _record(letter: Letter) -> ConsumerRecord:
    """The letter as the record first read (its original headers name the erasure keys of a sealed event)."""
    topic, partition, offset = letter.origin
    headers = tuple((k, v.encode()) for k, v in letter.original_headers.items())
    return ConsumerRecord(
        topic, int(partition or 0), int(offset or 0), 0, 0, letter.key, letter.value, None, 0, 0, headers
    )


async def _keys(settings: Settings, letters: list[Letter]) -> Keys:
    """The erasure keys the letters' events were sealed with or belong to."""
    pool = await connect(settings, max_size=2)
    try:
        return await load_keys(PgKeyStore.from_settings(settings, pool), [_record(x) for x in letters])
    finally:
        await pool.close()


def invalid(letter: Letter, keys: Keys | None = None) -> str | None:
    """Why the letter's event still fails validation (then a retry cannot succeed), or None when it passes."""
    model = _model(letter) if letter.headers.get("dlq_topic") else None
    if model is None:
        return f"unknown_origin: {letter.consumer} reads no model from {letter.headers.get('dlq_topic')!r}"
    try:
        decode(_record(letter), model, keys or {})
    except Rejected as exc:
        return f"{exc.reason}: {exc.detail}"
    except Erased as exc:
        return f"erased: its key {exc} was erased, so its consumer would skip it"
    return None


@dataclass(frozen=True)
class RetryResult:
    retried: list[Letter]
    invalid: list[tuple[Letter, str]]  # still fail validation: not retried, still pending


async def retry(settings: Settings, chosen: list[Letter], note: str = "", *, dry_run: bool = False) -> RetryResult:
    """Re-deliver each valid letter's event to its consumer's retry topic (read by that group only), then record
    the decision; letters whose events fail validation again are left pending. `dry_run` only sorts them."""
    result = RetryResult([], [])
    keys = await _keys(settings, chosen) if chosen else {}
    for letter in chosen:
        why = invalid(letter, keys)
        if why is None:
            result.retried.append(letter)
        else:
            result.invalid.append((letter, why))
    if dry_run or not result.retried:
        return result
    await ensure_topics(settings, tuple({topics.retries(x.consumer) for x in result.retried}))
    async with publishing(settings) as publisher:
        for letter in result.retried:
            origin = {f"dlq_{k}": letter.headers.get(f"dlq_{k}", "") for k in ("topic", "partition", "offset")}
            headers = {**letter.original_headers, **origin, RETRY_HEADER: letter.id}
            await publisher.publish_raw(topics.retries(letter.consumer).name, letter.key, letter.value, headers)
            await _decide(publisher, letter, "retried", note)
    return result
