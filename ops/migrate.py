"""`chirp erasure migrate`: rewrite the log once into sealed form under opaque user ids (docs/erasure.md).

Events written before sealing existed are in clear, and accounts made before opaque ids carry `gh-<github id>` or
`dev-<login>` as their id: in payloads, record keys and the `keys` header, and in the key store. Deleting keys
reaches neither. This command rewrites every topic of the deployment once, with the app stopped:

1. **Check** that no consumer group of the deployment has members or lag (the app is stopped and drained).
2. **Map** each legacy id to a new opaque id (`legacy_user_ids`) and move what PostgreSQL holds under it: the user
   key is copied under the new id, post keys change owner, erasures are renamed, and `login_accounts` gets the
   GitHub id or dev login, so the person logs in to the same account.
3. **Stage** each topic that needs it into `<topic>.migrating`, reading each partition in order. A record with a
   legacy id, with personal fields in clear, or without the `keys` header it should carry is opened, its ids mapped,
   and sealed as the publisher seals it (same event id and timestamp), under its new key; one that belongs to an
   erased key is dropped (every consumer skips it anyway); the others are copied as they are.
4. **Swap** each staged topic, once nothing was written to it since it was staged: delete it, create it again and
   copy the staged records back, partition for partition; then delete the copy.
5. **Finish**: set every consumer group's offsets at the new ends, rebuild every read model (`chirp rebuild
   --all`), end the sessions of the legacy ids, delete the legacy user keys and the mapping.

Per-key order holds: a key's records all come from one partition, are read in order and written in order by an
idempotent producer, and a new key stands for exactly one old key. Each step is recorded in `log_migration`, so an
interrupted run is simply run again: a copy half made is made again from the untouched topic, a topic staged or
half refilled is refilled from its complete copy. A completed run leaves nothing to do.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.structs import OffsetAndMetadata
from pydantic import ValidationError

from chirp import kafka_admin, redis_client
from chirp.settings import Settings
from consumers.runtime import all_consumers
from consumers.runtime.decoding import erasure_of, load_keys
from gateway.auth.sessions import SessionStore
from producers.sealing import ERASED_KEY, KEYS_HEADER, SEALED_HEADER, KeyErased, Unsealable, open_sealed, seal
from schemas.events import BY_TYPE, Event, new_id
from schemas.personal import SEALED, bound_keys, user_key
from schemas.topics import BY_NAME, DEAD_LETTER_PREFIX, KEEP_FOREVER, RETRY_PREFIX
from store.keys import PgKeyStore
from store.postgres import connect

LEGACY = ("gh-", "dev-")  # ids made before ids were opaque: they embed the GitHub id or the login
USER_FIELDS = ("user_id", "author_id", "follower_id", "followee_id", "target_id", "reporter_id")
STAGING = ".migrating"
FLUSH_EVERY = 5_000  # records sent before waiting for Kafka's acknowledgements
TOPIC_CHANGE_S = 60.0  # how long a topic may take to disappear after its deletion


class Refused(Exception):
    """The migration cannot run now (the app is running, or wrote to a topic since it was staged)."""


@dataclass
class TopicResult:
    topic: str
    records: int = 0
    rewritten: int = 0
    dropped: int = 0
    skipped: bool = False  # nothing in it needed a rewrite


@dataclass
class Migration:
    legacy: dict[str, str] = field(default_factory=dict)  # legacy id -> opaque id
    topics: list[TopicResult] = field(default_factory=list)
    rebuilt: int = 0


Say = Callable[[str], None]


async def migrate(settings: Settings, *, jobs: int = 1, say: Say = print) -> Migration:
    """Run (or resume) the migration; `Refused` while the app runs."""
    await check_stopped(settings)
    pool = await connect(settings, max_size=4)
    store = PgKeyStore.from_settings(settings, pool)
    result = Migration()
    try:
        phases = {r["topic"]: r for r in await pool.fetch("SELECT * FROM log_migration")}
        names = sorted({*await deployment_topics(settings), *phases})  # a topic deleted mid-swap is refilled
        legacy, needy = await scan(settings, store, [n for n in names if n not in phases])
        result.legacy = await map_ids(pool, legacy)
        say(f"{len(result.legacy)} legacy user id(s) mapped to opaque ids")
        for name in names:
            row = phases.get(name)
            if row is None and name not in needy:
                result.topics.append(TopicResult(name, skipped=True))
                continue
            if row is None:
                done = await stage(settings, pool, store, name, result.legacy)
                say(f"{name}: staged {done.records} record(s), {done.rewritten} rewritten, {done.dropped} dropped")
                row = await pool.fetchrow("SELECT * FROM log_migration WHERE topic = $1", name)
            else:
                done = TopicResult(name, row["records"], row["rewritten"], row["dropped"])
            result.topics.append(done)
            if row["phase"] != "swapped":
                await swap(settings, pool, name, row)
                say(f"{name}: swapped")
        if any(not t.skipped for t in result.topics) or result.legacy:
            result.rebuilt = await finish(settings, pool, result.legacy, jobs=jobs, say=say)
    finally:
        await pool.close()
    return result


async def check_stopped(settings: Settings) -> None:
    """Refuse while a consumer group of the deployment has members or has not consumed everything."""
    groups = [settings.group(c.name) for c in all_consumers()]
    lags = await kafka_admin.group_lags(settings, groups)
    busy = sorted(g for g, lag in lags.items() if lag.members)
    behind = sorted(g for g, lag in lags.items() if lag.lag)
    if busy:
        raise Refused(f"consumers are running ({', '.join(busy)}): stop the gateways and every consumer first")
    if behind:
        raise Refused(f"consumers have not caught up ({', '.join(behind)}): run them until `chirp lag` shows 0")


async def deployment_topics(settings: Settings) -> list[str]:
    """The event, dead-letter and retry topics of this deployment (not other namespaces', not staging copies)."""
    async with kafka_admin.admin(settings) as client:
        names = await client.list_topics()
    ours = [
        n
        for n in names
        if n in BY_NAME or (n.startswith((DEAD_LETTER_PREFIX, RETRY_PREFIX)) and not n.endswith(STAGING))
    ]
    return sorted(ours)


# Reading --------------------------------------------------------------------------------------------------------


async def partitions_of(settings: Settings, name: str) -> AsyncIterator[tuple[TopicPartition, list[ConsumerRecord]]]:
    """Every record of `name`, from its first offset, in offset order per partition."""
    async with kafka_admin.reader(settings) as reader:
        tps = await kafka_admin.partitions(reader, [name])
        ends = await reader.end_offsets(tps)
        starts = await reader.beginning_offsets(tps)
        left = {tp for tp in tps if ends[tp] > starts[tp]}
        if not left:
            return
        reader.assign(list(left))
        await reader.seek_to_beginning(*left)
        while left:
            for tp, records in (await reader.getmany(timeout_ms=500, max_records=FLUSH_EVERY)).items():
                yield tp, records
                if records and records[-1].offset + 1 >= ends[tp]:
                    left.discard(tp)


async def end_offsets(settings: Settings, name: str) -> dict[str, int]:
    async with kafka_admin.reader(settings) as reader:
        tps = await kafka_admin.partitions(reader, [name])
        return {str(tp.partition): offset for tp, offset in (await reader.end_offsets(tps)).items()}


def event_doc(record: ConsumerRecord) -> dict[str, Any] | None:
    """The record's event document (its clear part when sealed); None for a record that is not an event."""
    try:
        doc = orjson.loads(record.value or b"")
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or doc.get("type") not in BY_TYPE or not isinstance(doc.get("payload"), dict):
        return None
    return doc


def legacy_ids(doc: dict[str, Any], bound: tuple[str, ...]) -> set[str]:
    values = [doc.get("actor"), *(doc["payload"].get(f) for f in USER_FIELDS), *(k[2:] for k in bound)]
    return {v for v in values if isinstance(v, str) and v.startswith(LEGACY)}


def needs_rewrite(record: ConsumerRecord, doc: dict[str, Any], keys: dict[str, bytes]) -> bool:
    """Whether the record holds a legacy id, belongs to an erased key, holds personal fields in clear, or lacks the
    `keys` header every consumer skips it by once one of its keys is erased."""
    bound, sealed = erasure_of(record)
    if any(keys.get(k) == ERASED_KEY for k in bound) or legacy_ids(doc, bound):
        return True
    if sealed:
        return False
    model = BY_TYPE[doc["type"]]
    if SEALED.get(model):
        return True
    if bound:
        return False
    try:
        return bool(bound_keys(model.model_validate(doc)))
    except ValidationError:
        return False


async def scan(settings: Settings, store: PgKeyStore, names: list[str]) -> tuple[set[str], set[str]]:
    """(every legacy id in the topics `names`, the topics that hold a record needing a rewrite)."""
    legacy: set[str] = set()
    needy: set[str] = set()
    for name in names:
        async for _, records in partitions_of(settings, name):
            keys = await load_keys(store, records)
            for record in records:
                doc = event_doc(record)
                if doc is None:
                    continue
                legacy |= legacy_ids(doc, erasure_of(record)[0])
                if name not in needy and needs_rewrite(record, doc, keys):
                    needy.add(name)
    return legacy, needy


# Mapping --------------------------------------------------------------------------------------------------------


async def map_ids(pool: asyncpg.Pool, legacy: set[str]) -> dict[str, str]:
    """Give each legacy id its opaque id (the same on every run) and move the keys, erasures and logins to it."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO legacy_user_ids (legacy_id, user_id) SELECT * FROM unnest($1::text[], $2::text[])"
            " ON CONFLICT (legacy_id) DO NOTHING",
            sorted(legacy),
            [new_id() for _ in legacy],
        )
        await conn.execute(
            """INSERT INTO erasure_keys (key_id, owner_id, key, created_at, erased_at)
               SELECT 'u:' || m.user_id, m.user_id, k.key, k.created_at, k.erased_at
               FROM legacy_user_ids m JOIN erasure_keys k ON k.key_id = 'u:' || m.legacy_id
               ON CONFLICT (key_id) DO NOTHING"""
        )
        await conn.execute(
            """UPDATE erasure_keys k SET owner_id = m.user_id FROM legacy_user_ids m
               WHERE k.owner_id = m.legacy_id AND k.key_id <> 'u:' || m.legacy_id"""
        )
        await conn.execute(
            "UPDATE erasures e SET target = 'u:' || m.user_id FROM legacy_user_ids m"
            " WHERE e.target = 'u:' || m.legacy_id"
        )
        # The login finds the same account; not for an account already deleted (its erasure is scheduled).
        await conn.execute(
            """INSERT INTO login_accounts (login_kind, login_id, user_id)
               SELECT CASE WHEN m.legacy_id LIKE 'gh-%' THEN 'github' ELSE 'dev' END,
                      CASE WHEN m.legacy_id LIKE 'gh-%' THEN substr(m.legacy_id, 4) ELSE lower(substr(m.legacy_id, 5))
                      END,
                      m.user_id
               FROM legacy_user_ids m
               WHERE NOT EXISTS (SELECT 1 FROM erasures e WHERE e.target = 'u:' || m.user_id)
               ON CONFLICT DO NOTHING"""
        )
        rows = await conn.fetch("SELECT legacy_id, user_id FROM legacy_user_ids")
    return {r["legacy_id"]: r["user_id"] for r in rows}


def mapped(doc: dict[str, Any], ids: dict[str, str]) -> dict[str, Any]:
    if doc.get("actor") in ids:
        doc["actor"] = ids[doc["actor"]]
    payload = doc["payload"]
    for name in USER_FIELDS:
        if payload.get(name) in ids:
            payload[name] = ids[payload[name]]
    return doc


# Staging and swapping ------------------------------------------------------------------------------------------


async def rewritten(
    record: ConsumerRecord, doc: dict[str, Any], keys: dict[str, bytes], store: PgKeyStore, ids: dict[str, str]
) -> tuple[Event, bytes, list[tuple[str, bytes]]] | None:
    """The record as the publisher would write it today (None: it belongs to an erased key)."""
    bound, sealed = erasure_of(record)
    if any(keys.get(k) == ERASED_KEY for k in bound):
        return None
    if sealed:
        try:
            doc = open_sealed(record.value or b"", bound[0], keys[bound[0]])
        except (Unsealable, KeyError) as exc:
            raise Refused(f"{record.topic}/{record.partition}@{record.offset} does not open: {exc}") from None
    event = BY_TYPE[doc["type"]].model_validate(mapped(doc, ids))
    if any(key == ERASED_KEY for key in (await store.load(bound_keys(event))).values()):
        return None
    try:
        value, erasure = await seal(event, store)
    except KeyErased:
        return None
    headers = [(k, v) for k, v in record.headers or () if k not in (KEYS_HEADER, SEALED_HEADER)]
    return event, value, headers + [(k, v.encode()) for k, v in erasure.items()]


Send = Callable[[ConsumerRecord, bytes | None, bytes | None, int | None, list[tuple[str, bytes]]], Awaitable[None]]


@asynccontextmanager
async def sending(settings: Settings, topic: str) -> AsyncIterator[Send]:
    """`send(record, value, key, partition, headers)` writes a copy of `record` (its time kept) to `topic`, in order
    (one idempotent producer), waiting for Kafka's acknowledgements every `FLUSH_EVERY` records and at the end."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, enable_idempotence=True, acks="all")
    await producer.start()
    sent: list[asyncio.Future[Any]] = []

    async def send(
        record: ConsumerRecord,
        value: bytes | None,
        key: bytes | None,
        partition: int | None,
        headers: list[tuple[str, bytes]],
    ) -> None:
        future = await producer.send(
            topic, value, key=key, partition=partition, timestamp_ms=record.timestamp, headers=headers
        )
        sent.append(future)
        if len(sent) >= FLUSH_EVERY:
            await asyncio.gather(*sent)
            sent.clear()

    try:
        yield send
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def stage(
    settings: Settings, pool: asyncpg.Pool, store: PgKeyStore, name: str, ids: dict[str, str]
) -> TopicResult:
    """Write the rewritten copy of `name` to `<name>.migrating` and record it as staged."""
    copy = name + STAGING
    source_ends = await end_offsets(settings, name)
    await recreate(settings, copy, len(source_ends))
    done = TopicResult(name)
    async with sending(settings, copy) as send:
        async for tp, records in partitions_of(settings, name):
            keys = await load_keys(store, records)
            for record in records:
                done.records += 1
                doc = event_doc(record)
                key, value, headers = record.key, record.value, list(record.headers or ())
                if doc is not None and needs_rewrite(record, doc, keys):
                    new: tuple[Event, bytes, list[tuple[str, bytes]]] | bool | None
                    try:
                        new = await rewritten(record, doc, keys, store, ids)
                    except ValidationError:  # a record no consumer can read: kept as it is (dead-lettered anyway)
                        new = False
                    if new is None:
                        done.dropped += 1
                        continue
                    if isinstance(new, tuple):
                        event, value, headers = new
                        key = event.key.encode()
                        done.rewritten += 1
                partition = tp.partition if key == record.key else None  # a new key goes where it hashes to
                await send(record, value, key, partition, headers)
    staged = sum((await end_offsets(settings, copy)).values())
    if staged != done.records - done.dropped:
        raise Refused(f"{copy} holds {staged} records, {done.records - done.dropped} were written: run again")
    await pool.execute(
        """INSERT INTO log_migration (topic, phase, source_ends, records, rewritten, dropped)
           VALUES ($1, 'staged', $2, $3, $4, $5)""",
        name,
        source_ends,
        done.records,
        done.rewritten,
        done.dropped,
    )
    return done


async def swap(settings: Settings, pool: asyncpg.Pool, name: str, row: asyncpg.Record) -> None:
    """Replace `name` by its staged copy, partition for partition, then delete the copy."""
    if row["phase"] == "staged":
        if await end_offsets(settings, name) != row["source_ends"]:
            await pool.execute("DELETE FROM log_migration WHERE topic = $1", name)  # staged again next run
            raise Refused(f"{name} was written to after it was staged: stop every gateway and consumer, run again")
        await pool.execute("UPDATE log_migration SET phase = 'swapping', changed_at = now() WHERE topic = $1", name)
    copy = name + STAGING
    await recreate(settings, name, len(row["source_ends"]))
    copied = 0
    async with sending(settings, name) as send:
        async for tp, records in partitions_of(settings, copy):
            for r in records:
                await send(r, r.value, r.key, tp.partition, list(r.headers))
            copied += len(records)
    if copied != row["records"] - row["dropped"]:
        raise Refused(f"{name}: {copied} records copied back, {row['records'] - row['dropped']} staged: run again")
    await pool.execute("UPDATE log_migration SET phase = 'swapped', changed_at = now() WHERE topic = $1", name)
    async with kafka_admin.admin(settings) as client:
        await delete_topic(client, copy)


async def delete_topic(client: AIOKafkaAdminClient, name: str) -> None:
    """Delete `name` if it exists, and wait until the broker no longer lists it."""
    if name not in await client.list_topics():
        return
    await client.delete_topics([name])
    deadline = time.monotonic() + TOPIC_CHANGE_S
    while name in await client.list_topics():
        if time.monotonic() > deadline:
            raise Refused(f"{name} is still listed {TOPIC_CHANGE_S:.0f} s after its deletion: run again")
        await asyncio.sleep(0.2)


async def recreate(settings: Settings, name: str, partitions: int) -> None:
    """`name` empty, with `partitions` partitions, the deployment's replication, and kept forever."""
    async with kafka_admin.admin(settings) as client:
        await delete_topic(client, name)
        factor, min_isr = await kafka_admin.topic_replication(client)
        configs = {"retention.ms": str(KEEP_FOREVER), "min.insync.replicas": str(min_isr)}
        deadline = time.monotonic() + TOPIC_CHANGE_S
        while True:
            try:
                await client.create_topics([NewTopic(name, partitions, factor, topic_configs=configs)])
                return
            except TopicAlreadyExistsError:  # its deletion is still under way
                if time.monotonic() > deadline:
                    raise Refused(f"{name} could not be created again: run again") from None
                await asyncio.sleep(0.5)


# Finishing ------------------------------------------------------------------------------------------------------


async def finish(settings: Settings, pool: asyncpg.Pool, ids: dict[str, str], *, jobs: int, say: Say) -> int:
    """New ends for every group, rebuilt read models, no session or key of a legacy id left; returns the number of
    models rebuilt."""
    from ops.replay import rebuild_all

    async with kafka_admin.admin(settings) as client:
        known = set(str(g[0]) for g in await client.list_consumer_groups())
    for consumer in all_consumers():
        group = settings.group(consumer.name)
        if group not in known:
            continue
        async with kafka_admin.reader(settings, group_id=group) as reader:
            tps = await kafka_admin.partitions(reader, [*consumer.handlers, consumer.retry_topic.name])
            if tps:
                reader.assign(tps)
                ends = await reader.end_offsets(tps)
                await reader.commit({tp: OffsetAndMetadata(end, "") for tp, end in ends.items()})
    say("consumer groups set at the new ends; rebuilding every read model")
    results = await rebuild_all(settings, jobs=jobs)
    redis = redis_client.connect(settings, decode_responses=True)
    try:
        sessions = SessionStore(redis, settings.refresh_token_days)
        for legacy in ids:
            await sessions.revoke_user(legacy)
    finally:
        await redis.aclose()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "DELETE FROM erasure_keys WHERE key_id = ANY($1::text[])", [user_key(legacy) for legacy in ids]
        )
        await conn.execute("DELETE FROM legacy_user_ids")
        await conn.execute("DELETE FROM log_migration")
    say(f"{len(ids)} legacy id(s) gone from the log, the key store and the sessions")
    return len(results)
