"""Kafka look-ups the operator tools share: offsets, group offsets and states, the record at an offset.

Clients, group states and committed offsets live in `chirp.kafka_admin` (the gateway's `/readyz` uses them too)."""

from __future__ import annotations

import time

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupIdNotFound, for_code
from aiokafka.protocol.admin import DeleteGroupsRequest

from chirp.kafka_admin import GroupState, admin, committed, group_states, partitions, reader
from chirp.settings import Settings


class UnknownName(Exception):
    """A consumer group or topic that does not exist (a mistyped name: the CLI answers with exit 2)."""


__all__ = [
    "GroupState",
    "UnknownName",
    "admin",
    "committed",
    "delete_group",
    "group_states",
    "groups",
    "partitions",
    "reader",
    "records_at",
]


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


async def groups(client: AIOKafkaAdminClient) -> list[str]:
    """Every consumer group id known to the cluster, sorted."""
    return sorted(str(g[0]) for g in await client.list_consumer_groups())


async def delete_group(client: AIOKafkaAdminClient, group_id: str) -> None:
    """Delete an empty consumer group (its committed offsets go with it); one that never committed is not there."""
    coordinator = await client.find_coordinator(group_id)
    response = await client._send_request(DeleteGroupsRequest([group_id]), coordinator)
    for _, error_code in response.results:
        if error_code and error_code != GroupIdNotFound.errno:
            raise for_code(error_code)(f"delete group {group_id}")
