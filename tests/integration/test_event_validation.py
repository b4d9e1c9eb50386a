"""Every consumer applies the same event validation: a bad event published straight to Kafka is dead-lettered by
every consumer of its topic, so it is in no read model (before, a NUL reached timelines and trending while posts and
search refused it)."""

from __future__ import annotations

import asyncio
import subprocess

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from chirp.settings import Settings
from schemas import topics
from tests.integration.explore_support import parsed, registered

POST_PARSED_READERS = ("posts", "search", "timelines", "trending", "mentions")


async def letters_naming(settings: Settings, consumer: str, needle: bytes, timeout: float = 90) -> list[bytes]:
    """The records of `consumer`'s dead-letter topic whose value holds `needle`; waits until there is one."""
    reader = AIOKafkaConsumer(
        topics.dead_letters(consumer).name, bootstrap_servers=settings.bootstrap_servers, auto_offset_reset="earliest"
    )
    await reader.start()
    found: list[bytes] = []
    try:
        async with asyncio.timeout(timeout):
            while not found:
                for records in (await reader.getmany(timeout_ms=500)).values():
                    found += [r.value for r in records if r.value and needle in r.value]
    finally:
        await reader.stop()
    return found


async def test_a_nul_published_straight_to_kafka_is_dead_lettered_by_every_reader(
    settings: Settings, pipeline: subprocess.Popen[bytes]
) -> None:
    author = registered("nul")
    good = parsed(author.payload.user_id, "a post #nulcheck", tags=("nulcheck",))
    raw = orjson.loads(good.model_dump_json())
    raw["payload"]["body"] = raw["payload"]["text"] = "a post\x00 #nulcheck"  # what the gateway refuses
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topics.POST_PARSED.name, orjson.dumps(raw), key=good.key.encode())
    finally:
        await producer.stop()
    for consumer in POST_PARSED_READERS:
        letters = await letters_naming(settings, consumer, good.id.encode())
        assert len(letters) == 1, consumer
