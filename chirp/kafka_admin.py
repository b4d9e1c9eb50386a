"""Kafka admin look-ups shared by the operator tools (`chirp lag`, replays, dead letters) and the gateway's
`/readyz`: clients, consumer groups' states and members, committed offsets, lag (end offset − committed), and
the record at an offset (the consumer runtime's `newest_events`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import for_code

from chirp.settings import Settings


def replication(brokers: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) of a topic on a cluster of `brokers`: 3 and 2 from three brokers
    on, so an event acknowledged with acks=all is on two brokers at least and one broker may stop without writes
    failing; one copy below that."""
    return (3, 2) if brokers >= 3 else (1, 1)


async def topic_replication(client: AIOKafkaAdminClient) -> tuple[int, int]:
    """`replication` for the cluster `client` talks to."""
    return replication(len((await client.describe_cluster())["brokers"]))


@asynccontextmanager
async def admin(settings: Settings) -> AsyncIterator[AIOKafkaAdminClient]:
    """A started admin client, closed on exit."""
    client = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers, client_id="chirp-ops")
    await client.start()
    try:
        yield client
    finally:
        await client.close()


@asynccontextmanager
async def reader(settings: Settings, group_id: str | None = None, **options: object) -> AsyncIterator[AIOKafkaConsumer]:
    """A started consumer with no subscription (assign partitions yourself); commits only when told to."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id="chirp-ops",
        **options,  # type: ignore[arg-type]
    )
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()


async def partitions(consumer: AIOKafkaConsumer, names: Iterable[str]) -> list[TopicPartition]:
    """Every partition of the named topics that exist (unknown topics have none, and are not created: asking for
    an unknown topic's metadata would make a broker with `auto.create.topics.enable` create it)."""
    existing = await consumer.topics()
    names = [name for name in names if name in existing]
    # Track these topics' metadata in the client, so offset look-ups find their leaders without waiting.
    await consumer._client.set_topics(names)
    cluster = consumer._client.cluster
    found: list[TopicPartition] = []
    for name in names:
        found.extend(TopicPartition(name, p) for p in sorted(cluster.partitions_for_topic(name) or ()))
    return found


async def records_at(
    settings: Settings, offsets: dict[TopicPartition, int], timeout: float = 5.0
) -> dict[TopicPartition, ConsumerRecord]:
    """The record at each given offset (missing when the offset is past the end or the fetch times out)."""
    if not offsets:
        return {}
    found: dict[TopicPartition, ConsumerRecord] = {}
    async with reader(settings) as consumer:
        consumer.assign(list(offsets))
        for tp, offset in offsets.items():
            consumer.seek(tp, offset)
        deadline = time.monotonic() + timeout
        while len(found) < len(offsets) and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200, max_records=len(offsets) * 10)
            for tp, records in batch.items():
                if tp not in found and records:
                    found[tp] = records[0]
                    consumer.pause(tp)
    return found


@dataclass(frozen=True)
class GroupState:
    group: str
    state: str  # Stable, Empty, Dead, PreparingRebalance, CompletingRebalance
    members: int

    @property
    def active(self) -> bool:
        return self.members > 0


async def group_states(client: AIOKafkaAdminClient, group_ids: list[str]) -> dict[str, GroupState]:
    """State and member count of each group (one that does not exist is `Dead` with no members)."""
    states: dict[str, GroupState] = {}
    # One group per request: aiokafka 0.14 fails to decode Kafka 4's answer about several groups at once.
    answers = await asyncio.gather(*(client.describe_consumer_groups([group_id]) for group_id in group_ids))
    for response in (r for responses in answers for r in responses):
        for group in response.groups:
            error_code, group_id, state = group[0], group[1], group[2]
            if error_code:
                raise for_code(error_code)(f"describe group {group_id}")
            states[group_id] = GroupState(group_id, state, len(group[5]))
    return states


async def committed(client: AIOKafkaAdminClient, group_id: str) -> dict[TopicPartition, int]:
    """The group's committed offsets (partitions it never committed are absent)."""
    offsets = await client.list_consumer_group_offsets(group_id)
    return {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


Offsets = dict[TopicPartition, tuple[int, int]]  # partition → (committed, end)


async def group_offsets(settings: Settings, group_ids: list[str]) -> dict[str, Offsets]:
    """Each group's committed and end offset per partition it committed (of topics that still exist)."""
    async with admin(settings) as client, reader(settings) as kafka:
        fetched = await asyncio.gather(*(committed(client, group) for group in group_ids))
        by_group = dict(zip(group_ids, fetched, strict=True))
        named = sorted({tp.topic for offsets in by_group.values() for tp in offsets})
        existing = set(await partitions(kafka, named))
        tps = sorted({tp for offsets in by_group.values() for tp in offsets if tp in existing})
        ends = await kafka.end_offsets(tps) if tps else {}
    return {
        group: {tp: (offset, ends[tp]) for tp, offset in sorted(offsets.items()) if tp in ends}
        for group, offsets in by_group.items()
    }


@dataclass(frozen=True)
class GroupLag:
    group: str
    members: int
    lag: int  # end offset − committed, summed over the partitions the group committed


async def group_lags(settings: Settings, group_ids: list[str]) -> dict[str, GroupLag]:
    """Members and total lag of each group, as `chirp lag` computes it."""
    async with admin(settings) as client:
        states = await group_states(client, group_ids)
    offsets = await group_offsets(settings, group_ids)
    return {
        group: GroupLag(
            group,
            states[group].members if group in states else 0,
            sum(max(0, end - done) for done, end in offsets[group].values()),
        )
        for group in group_ids
    }
