"""Kafka look-ups the operator tools share: offsets, group offsets and states, the record at an offset."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupIdNotFound, for_code
from aiokafka.protocol.admin import DeleteGroupsRequest

from chirp.settings import Settings


class UnknownName(Exception):
    """A consumer group or topic that does not exist (a mistyped name: the CLI answers with exit 2)."""


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
    """Every partition of the named topics that exist (unknown topics have none)."""
    names = list(names)
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


async def groups(client: AIOKafkaAdminClient) -> list[str]:
    """Every consumer group id known to the cluster, sorted."""
    return sorted(str(g[0]) for g in await client.list_consumer_groups())


async def group_states(client: AIOKafkaAdminClient, group_ids: list[str]) -> dict[str, GroupState]:
    """State and member count of each group."""
    states: dict[str, GroupState] = {}
    if not group_ids:
        return states
    for response in await client.describe_consumer_groups(group_ids):
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


async def delete_group(client: AIOKafkaAdminClient, group_id: str) -> None:
    """Delete an empty consumer group (its committed offsets go with it); one that never committed is not there."""
    coordinator = await client.find_coordinator(group_id)
    response = await client._send_request(DeleteGroupsRequest([group_id]), coordinator)
    for _, error_code in response.results:
        if error_code and error_code != GroupIdNotFound.errno:
            raise for_code(error_code)(f"delete group {group_id}")
