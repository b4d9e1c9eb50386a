"""The private parts of libraries the code relies on are still there and still behave as relied on.

Each reach into a library's internals is pinned here against the real services, so a library upgrade that moves
one fails loudly in this file (not as a hang or a slow path in production):
- `chirp/redis_client.py` `HiredisPacking` packs with redis-py's `HiredisRespSerializer` and reads buffered
  replies from `_AsyncHiredisParser._reader` (redis/redis-py#4176: the asyncio client packs in Python);
- `chirp/kafka_admin.py` `partitions` tracks topics with `AIOKafkaConsumer._client.set_topics` and reads
  `_client.cluster` (aiokafka has no public call that fetches metadata for topics a consumer does not subscribe);
- `producers/broker.py` `stop_within` closes FastStream's aiokafka producer through `_sender` and `client` when
  `stop()` would wait for ever on a dead broker (aio-libs/aiokafka#1101);
- `consumers/runtime/polling.py` `take_batches_with_poll` replaces a FastStream batch subscriber's `get_msg`, which
  sleeps `batch_timeout_ms` after every empty poll; the consume loop must still take its batches from it;
- `consumers/runtime/polling.py` `Gathering` sets aiokafka's `Fetcher._fetch_max_wait_ms` and `_fetch_min_bytes`
  between fetches (aiokafka fixes them when the consumer is made), and the next fetch request must carry them.
"""

from __future__ import annotations

import asyncio
import inspect
import time

import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import NewTopic
from aiokafka.protocol.fetch import FetchRequest
from redis._parsers.hiredis import _AsyncHiredisParser
from redis.exceptions import ResponseError

from chirp import kafka_admin
from chirp.redis_client import HiredisPacking
from chirp.settings import Settings
from consumers.runtime.polling import Gathering, poll, take_batches_with_poll
from producers.broker import ensure_topics, make_broker
from schemas import topics
from tests.scratch import scratch_id


async def test_buffered_replies_read_through_hiredis_equal_redis_pys_own(settings: Settings) -> None:
    ours = aioredis.Redis.from_url(settings.redis_url, connection_class=HiredisPacking, decode_responses=True)
    plain = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    key = "chirp:test:internals"
    try:
        replies = []
        for client in (ours, plain):
            async with client.pipeline(transaction=False) as pipe:
                pipe.delete(key).rpush(key, "a", "ü", "✓").lrange(key, 0, -1).incr(key).get(key + ":none")
                replies.append(await pipe.execute(raise_on_error=False))
        assert isinstance(replies[0][3], ResponseError) and isinstance(replies[1][3], ResponseError)
        same = [[r for r in reply[1:] if not isinstance(r, Exception)] for reply in replies]
        assert same[0] == same[1] == [3, ["a", "ü", "✓"], None]
        connection = await ours.connection_pool.get_connection()
        try:
            assert isinstance(connection, HiredisPacking)
            parser = connection._parser
            assert isinstance(parser, _AsyncHiredisParser), "redis-py no longer reads with hiredis"
            assert parser._connected and callable(parser._reader.gets)  # type: ignore[attr-defined]
        finally:
            await ours.connection_pool.release(connection)
    finally:
        await plain.delete(key)
        await ours.aclose()
        await plain.aclose()


async def test_partitions_of_topics_a_consumer_does_not_subscribe(settings: Settings) -> None:
    await ensure_topics(settings)
    unknown = f"chirp-unknown-{scratch_id()}"
    async with kafka_admin.reader(settings) as consumer:
        found = await kafka_admin.partitions(consumer, [topics.POST_CREATED.name, unknown])
    async with kafka_admin.admin(settings) as client:
        # A broker creates an auto-created topic a moment after the metadata request: give it that moment.
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            assert unknown not in await client.list_topics(), "asking about an unknown topic created it"
            await asyncio.sleep(0.2)
    assert sorted(tp.partition for tp in found) == list(range(topics.POST_CREATED.partitions))
    assert {tp.topic for tp in found} == {topics.POST_CREATED.name}


async def test_the_producer_parts_a_stuck_stop_closes_are_there(settings: Settings) -> None:
    broker = make_broker(settings)
    await broker.connect()
    try:
        producer = getattr(getattr(broker.config.producer, "_producer", None), "producer", None)
        assert isinstance(producer, AIOKafkaProducer), "FastStream moved its aiokafka producer"
        assert inspect.iscoroutinefunction(producer._sender.close)
        assert inspect.iscoroutinefunction(producer.client.close)
    finally:
        await broker.stop()


async def test_a_batch_subscriber_takes_its_batches_from_get_msg(settings: Settings) -> None:
    """FastStream's consume loop calls `self.get_msg(consumer)`: the replacement is the one called."""
    from faststream.kafka.subscriber.usecase import BatchSubscriber, LogicSubscriber

    assert "self.get_msg(consumer)" in inspect.getsource(LogicSubscriber._run_consume_loop)
    broker = make_broker(settings)
    subscriber = broker.subscriber(f"probe-{scratch_id()}", group_id=f"g-{scratch_id()}", batch=True)
    assert isinstance(subscriber, BatchSubscriber)
    take_batches_with_poll(subscriber, 10, 5)

    class Fake:
        async def getmany(self, timeout_ms: int, max_records: int) -> dict[object, list[object]]:
            return {}

    assert await subscriber.get_msg(Fake()) == ()


async def test_a_gathering_consumer_holds_its_fetches_while_events_come_and_long_polls_when_idle(
    settings: Settings,
) -> None:
    """After a batch Kafka holds the next fetches for the gathering time; after an empty poll they are long polls
    again, answered by the first record, and an idle consumer sends one per long poll, not one per gathering."""
    topic = f"probe-{scratch_id()}"
    async with kafka_admin.admin(settings) as client:
        await client.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    kafka = AIOKafkaConsumer(
        topic, bootstrap_servers=settings.bootstrap_servers, group_id=f"g-{topic}", auto_offset_reset="earliest"
    )
    await producer.start()
    await kafka.start()
    fetches: list[tuple[int, int]] = []  # (max wait ms, min bytes) of each fetch request sent
    send = kafka._client.send

    def recording(node_id: int, request: object, **kwargs: object) -> object:
        if isinstance(request, FetchRequest):
            fetches.append((request._max_wait_ms, request._min_bytes))
        return send(node_id, request, **kwargs)

    kafka._client.send = recording  # type: ignore[method-assign]
    gathering = Gathering(100, 1 << 20)

    async def taken(wait_ms: int) -> tuple[int, float]:
        started = time.monotonic()
        batch = await poll(kafka, 10, wait_ms)
        gathering.after(kafka, bool(batch))
        return sum(len(records) for records in batch.values()), time.monotonic() - started

    try:
        await producer.send_and_wait(topic, b"first")
        assert (await taken(10_000))[0] == 1
        assert fetches[-1][1] == 1, "the fetch that found the first record was not a long poll"
        gathered = len(fetches)
        await producer.send_and_wait(topic, b"second")
        count, waited = await taken(5_000)
        assert count == 1 and waited >= 0.06, f"the fetch after a batch was answered in {waited:.3f} s"
        assert fetches[gathered] == (100, 1 << 20), "the fetch after a batch did not gather"
        assert (await taken(300))[0] == 0  # a quiet spell: the next fetches long-poll
        await asyncio.sleep(0.15)  # the gathering fetch still parked at the broker expires
        idle = len(fetches)
        assert (await taken(2_000))[0] == 0
        assert len(fetches) - idle <= 6, f"{len(fetches) - idle} fetches in 2 s of idling"
        assert all(min_bytes == 1 for _, min_bytes in fetches[idle:])
    finally:
        await kafka.stop()
        await producer.stop()
        async with kafka_admin.admin(settings) as client:
            await client.delete_topics([topic])
