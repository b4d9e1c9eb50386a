"""Helpers for the posts tests: a publisher, reading a topic from now on, waiting for a group to catch up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from chirp.settings import Settings
from tests.conftest import eventually


@asynccontextmanager
async def tail(settings: Settings, topic: str) -> AsyncIterator[AIOKafkaConsumer]:
    """A consumer (no group) positioned at the end of every partition of `topic`: it sees what comes next."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = await eventually(lambda: _partitions(consumer, topic), timeout=30)
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        await consumer.seek_to_end()
        for tp in consumer.assignment():
            await consumer.position(tp)  # resolve the end offsets now, before anything is published
        yield consumer
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer.topics()  # refreshes metadata
    return consumer.partitions_for_topic(topic) or set()


async def caught_up(settings: Settings, group: str, topic: str, timeout: float = 60) -> None:
    """Wait until `group` has committed everything published to `topic` so far (so it handled it)."""
    probe = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=group, enable_auto_commit=False)
    await probe.start()
    try:
        tps = [TopicPartition(topic, p) for p in await eventually(lambda: _partitions(probe, topic))]
        ends = await probe.end_offsets(tps)

        async def behind() -> int:
            return sum(max(0, ends[tp] - ((await probe.committed(tp)) or 0)) for tp in tps)

        await eventually(behind, until=lambda lag: lag == 0, timeout=timeout)
    finally:
        await probe.stop()


async def status_of(client: httpx.AsyncClient, url: str) -> int:
    return (await client.get(url)).status_code
