"""Kafka look-ups the operator tools share: offsets, group offsets and states, the record at an offset.

Clients, group states, committed offsets and records at offsets live in `chirp.kafka_admin` (the gateway's
`/readyz` and the consumer runtime use them too)."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupIdNotFound, for_code
from aiokafka.protocol.admin import DeleteGroupsRequest

from chirp.kafka_admin import (
    GroupState,
    admin,
    committed,
    group_states,
    partitions,
    reader,
    records_at,
    topic_replication,
)


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
    "topic_replication",
]


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
