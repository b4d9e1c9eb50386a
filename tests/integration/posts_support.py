"""Helpers for the posts tests: reading a topic from now on, waiting for a consumer group to catch up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from chirp.settings import Settings
from schemas.topics import Topic
from tests.conftest import eventually


def _partitions(topic: Topic) -> list[TopicPartition]:
    return [TopicPartition(topic.name, p) for p in range(topic.partitions)]


@asynccontextmanager
async def tail(settings: Settings, topic: Topic) -> AsyncIterator[AIOKafkaConsumer]:
    """A consumer (no group) positioned at the end of every partition of `topic`: it sees what comes next."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(_partitions(topic))
        await consumer.seek_to_end()
        for tp in consumer.assignment():
            await consumer.position(tp)  # resolve the end offsets now, before anything is published
        yield consumer
    finally:
        await consumer.stop()


async def caught_up(settings: Settings, group: str, topic: Topic, timeout: float = 60) -> None:
    """Wait until `group` has committed everything published to `topic` so far (so it handled all of it)."""
    probe = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=group, enable_auto_commit=False)
    await probe.start()
    try:
        tps = _partitions(topic)
        ends = await probe.end_offsets(tps)

        async def behind() -> int:
            return sum([max(0, ends[tp] - ((await probe.committed(tp)) or 0)) for tp in tps])

        await eventually(behind, until=lambda lag: lag == 0, timeout=timeout)
    finally:
        await probe.stop()


async def status_of(client: httpx.AsyncClient, url: str) -> int:
    return (await client.get(url)).status_code
