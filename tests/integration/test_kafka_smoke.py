"""Kafka smoke test: aiokafka produces, and a consumer group consumes and commits, one message."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from chirp.settings import Settings
from ops.services import kafka
from tests.scratch import scratch_id


@pytest.fixture(scope="module")
def settings() -> Settings:
    s = Settings()
    kafka.up(s)
    return s


async def test_produce_consume_commit(settings: Settings) -> None:
    topic = f"smoke-{scratch_id()}"
    group = f"smoke-group-{scratch_id()}"
    payload = uuid.uuid4().bytes

    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    await producer.start()
    try:
        meta = await producer.send_and_wait(topic, payload, key=b"k")
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.bootstrap_servers,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        msg = await asyncio.wait_for(consumer.getone(), timeout=30)
        assert msg.value == payload
        assert (msg.partition, msg.offset) == (meta.partition, meta.offset)
        await consumer.commit()
        committed = await consumer.committed(TopicPartition(topic, msg.partition))
        assert committed == msg.offset + 1
    finally:
        await consumer.stop()
