"""Records into event models: a record that can never be handled is `Rejected`, naming why; a record that belongs
to an erased key is `Erased` and skipped (counted in `chirp_consumer_erased_total`, never dead-lettered).

Sealed records (producers/sealing.py) are opened here, once per event, with the keys `load_keys` fetched for the
batch beforehand (one query per batch, cached with a bound: store/keys.py).

A process decodes a record once, whatever number of its consumers read it (`chirp consume --all` runs seven on
post-parsed): `RecentlyDecoded` keeps the events of the topics several of them read, keyed by the record's bytes, the
event model and the key it is opened with; events are frozen, so consumers share them. A record of an erased key is
checked before it, and a record that fails is never kept, so it changes no outcome."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import get_args

import orjson
from aiokafka import ConsumerRecord
from pydantic import ValidationError

from chirp import kafka_admin
from chirp.settings import Settings
from consumers.runtime.declaration import Consumer
from consumers.runtime.metrics import ERASED
from producers.sealing import ERASED_KEY, KEYS_HEADER, SEALED_HEADER, Unsealable, open_sealed
from schemas.events import Event
from store.keys import PgKeyStore

Keys = Mapping[str, bytes]  # key id -> key (ERASED_KEY once erased) for one batch
Known = tuple[type[Event], bool, bytes | None, bytes]  # (model, sealed?, the key it is opened with or None, value)


class RecentlyDecoded:
    """The events a process decoded lately from `topics` (those several of its consumers read): two generations of
    `size` events, a plain dict each (an LRU cost about as much as the validation it saves)."""

    def __init__(self, topics: set[str], size: int = 4096) -> None:
        self.topics = topics
        self.size = size
        self.new: dict[Known, Event] = {}
        self.old: dict[Known, Event] = {}

    def get(self, known: Known) -> Event | None:
        return self.new.get(known) or self.old.get(known)

    def put(self, known: Known, event: Event) -> None:
        if len(self.new) >= self.size:
            self.old, self.new = self.new, {}
        self.new[known] = event


class Rejected(Exception):
    """A record that can never be handled: the reason goes in the dead-letter headers."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Erased(Exception):
    """A record that belongs to an erased key: skipped, as if it had never been written."""


@dataclass(slots=True)
class Item:
    record: ConsumerRecord
    event: Event


@dataclass(slots=True)
class Decoded:
    """A batch after decoding: events by topic, in offset order, and the records that could not be decoded."""

    by_topic: dict[str, list[Item]]
    rejected: list[tuple[ConsumerRecord, Rejected]]


def erasure_of(record: ConsumerRecord) -> tuple[tuple[str, ...], bool]:
    """(the keys a record belongs to, whether its value is sealed), from its headers."""
    bound: tuple[str, ...] = ()
    sealed = False
    for name, value in record.headers or ():
        if name == KEYS_HEADER:
            bound = tuple(value.decode().split())
        elif name == SEALED_HEADER:
            sealed = value == b"1"
    return bound, sealed


async def load_keys(store: PgKeyStore, records: Sequence[ConsumerRecord]) -> dict[str, bytes]:
    """The keys the records belong to, in one look-up; `KeyStoreIncomplete` (an outage) when a sealing key is
    missing from the store."""
    bound: set[str] = set()
    sealing: set[str] = set()
    for record in records:
        keys, sealed = erasure_of(record)
        bound.update(keys)
        if sealed and keys:
            sealing.add(keys[0])
    return await store.load(bound, sealing) if bound else {}


def decode(
    record: ConsumerRecord, model: type[Event], keys: Keys | None = None, recent: RecentlyDecoded | None = None
) -> Event:
    """Parse a record into `model` (opening it with `keys` when sealed); `Erased` when it belongs to an erased key,
    `Rejected` naming why when it can never be read. With `recent`, a record another consumer of the process decoded
    is not decoded again."""
    bound, sealed = erasure_of(record) if record.headers else ((), False)
    if bound and keys is not None and any(keys.get(k) == ERASED_KEY for k in bound):
        raise Erased(bound[0])
    value = record.value or b""
    if recent is None or record.topic not in recent.topics:
        return _open(record, model, bound, keys or {}) if sealed else _validate(record, model, value)
    # a sealed record's outcome depends on the key it is opened with (none loaded: rejected, never kept)
    known = (model, sealed, (keys or {}).get(bound[0]) if sealed and bound else None, value)
    event = recent.get(known)
    if event is None:
        event = _open(record, model, bound, keys or {}) if sealed else _validate(record, model, value)
        recent.put(known, event)
    return event


def _validate(record: ConsumerRecord, model: type[Event], value: bytes) -> Event:
    try:
        return model.__pydantic_validator__.validate_json(value)  # type: ignore[no-any-return]
    except ValidationError as exc:
        raise _reason(record, model, exc) from None


def _open(record: ConsumerRecord, model: type[Event], bound: tuple[str, ...], keys: Keys) -> Event:
    key = keys.get(bound[0]) if bound else None
    if not key:
        raise Rejected("sealed", f"sealed with {bound[0] if bound else 'no key'}, which was not loaded")
    try:
        doc = open_sealed(record.value or b"", bound[0], key)
    except (Unsealable, ValueError, KeyError, TypeError, orjson.JSONDecodeError) as exc:
        raise Rejected("unsealable", str(exc) or type(exc).__name__) from None
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        raise Rejected("invalid_payload", _short(exc)) from None


def decode_batch(
    consumer: Consumer,
    records: Sequence[ConsumerRecord],
    keys: Keys | None = None,
    recent: RecentlyDecoded | None = None,
) -> Decoded:
    """A polled batch decoded (CPU only): records of the retry topic stand for the ones first dead-lettered;
    erased records are left out."""
    decoded = Decoded(defaultdict(list), [])
    retry_topic = consumer.retry_topic.name
    for record in records:
        try:
            if record.topic == retry_topic:
                record = retried_record(record, consumer)
            event = decode(record, consumer.handlers[record.topic].model, keys, recent)
            decoded.by_topic[record.topic].append(Item(record, event))  # (a topic whose events are all erased: none)
        except Rejected as exc:
            decoded.rejected.append((record, exc))
        except Erased:
            ERASED.labels(consumer.name, record.topic).inc()
    return decoded


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


async def newest_events(settings: Settings, consumer: Consumer, keys: PgKeyStore | None = None) -> list[Event]:
    """The last event of each partition `consumer` reads, as the log stands now (undecodable and erased ones, and
    sealed ones without `keys`, left out)."""
    async with kafka_admin.reader(settings) as client:
        ends = await client.end_offsets(await kafka_admin.partitions(client, consumer.handlers))
    records = await kafka_admin.records_at(settings, {tp: end - 1 for tp, end in ends.items() if end > 0})
    loaded = await load_keys(keys, list(records.values())) if keys is not None else {}
    events = []
    for tp, record in records.items():
        try:
            events.append(decode(record, consumer.handlers[tp.topic].model, loaded))
        except (Rejected, Erased):
            continue
    return events


def header(record: ConsumerRecord, name: str) -> str:
    for key, value in record.headers or ():
        if key == name:
            return value.decode(errors="replace")
    return ""


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
