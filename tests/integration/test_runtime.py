"""The consumer runtime on the real broker and store: delivery, redelivery after a crash, dead letters, shutdown."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from chirp.settings import Settings
from producers.broker import Publisher
from schemas import topics
from schemas.events import PostCreated, PostCreatedData, new_id
from schemas.topics import Topic
from tests.conftest import eventually
from tests.scratch import scratch_id


@pytest.fixture
def topic() -> Topic:
    return Topic(f"probe-{scratch_id()}", key="post_id")


@contextmanager
def probe_process(topic: Topic, group: str, **extra: str) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        **extra,
        "CHIRP_PROBE_TOPIC": topic.name,
        "CHIRP_PROBE_GROUP": group,
        "CHIRP_CONSUMER_MAX_ATTEMPTS": "3",
        "CHIRP_CONSUMER_RETRY_BASE_MS": "20",
    }
    cmd = [sys.executable, "-m", "ops", "consume", "tests.integration.probe", "--metrics-port", "0"]
    proc = subprocess.Popen(cmd, env=env)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def post(topic: Topic, body: str) -> PostCreated:
    event = PostCreated(payload=PostCreatedData(post_id=new_id(), author_id="probe", body=body))
    return event


async def send(publisher: Publisher, topic: Topic, events: list[PostCreated]) -> None:
    await asyncio.gather(
        *(publisher.publish_raw(topic.name, e.key.encode(), e.model_dump_json().encode(), {}) for e in events)
    )


async def rows(pg: asyncpg.Pool, topic: Topic) -> dict[str, int]:
    try:
        found = await pg.fetch("SELECT event_id, deliveries FROM probe_events WHERE topic = $1", topic.name)
    except asyncpg.UndefinedTableError:
        return {}
    return {r["event_id"]: r["deliveries"] for r in found}


async def dead_letters(settings: Settings, group: str, n: int) -> list[dict]:
    consumer = AIOKafkaConsumer(
        topics.dead_letters(group).name, bootstrap_servers=settings.bootstrap_servers, auto_offset_reset="earliest"
    )
    await consumer.start()
    found: list[dict] = []
    try:
        async with asyncio.timeout(60):
            while len(found) < n:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for r in records:
                        found.append({"value": r.value, **{k: v.decode() for k, v in r.headers}})
    finally:
        await consumer.stop()
    return found


async def test_event_reaches_consumer_in_another_process(settings, publisher, pg, topic) -> None:
    events = [post(topic, f"hello {i}") for i in range(10)]
    await send(publisher, topic, events)
    with probe_process(topic, f"g-{topic.name}"):
        seen = await eventually(lambda: rows(pg, topic), until=lambda r: len(r) == 10, timeout=60)
    assert set(seen) == {e.id for e in events}


async def test_an_event_reaching_an_idle_consumer_is_handled_without_waiting_out_the_poll(
    settings, publisher, pg, topic
) -> None:
    """After a poll that found nothing the consumer polls again at once: with a 3 s poll wait, an event published
    while the consumer idles past it is handled within a fetch, not after a 3 s pause."""
    first, second = post(topic, "first"), post(topic, "second")
    await send(publisher, topic, [first])
    with probe_process(topic, f"g-{topic.name}", CHIRP_CONSUMER_BATCH_TIMEOUT_MS="3000"):
        await eventually(lambda: rows(pg, topic), until=lambda r: first.id in r, timeout=60)
        await asyncio.sleep(3.3)  # the scenario: idle past one empty poll of 3 s (then it used to pause 3 s)
        sent = time.monotonic()
        await send(publisher, topic, [second])
        await eventually(lambda: rows(pg, topic), until=lambda r: second.id in r, timeout=10)
        waited = time.monotonic() - sent
    assert waited < 2.0, f"handled {waited:.2f} s after it was published"


async def batch_sizes(pg: asyncpg.Pool, topic: Topic) -> list[int]:
    return [r["size"] for r in await pg.fetch("SELECT size FROM probe_batches WHERE topic = $1", topic.name)]


@pytest.mark.parametrize("gather", [True, False])
async def test_a_gathering_consumer_takes_events_that_trickle_in_as_one_batch(
    settings, publisher, pg, topic, gather
) -> None:
    """Kafka holds a gathering consumer's fetch for `consumer_gather_ms`: 20 events published 20 ms apart reach it
    in a few batches; a consumer that does not gather takes each as it comes."""
    first = post(topic, "first")
    await send(publisher, topic, [first])
    extra = {"CHIRP_PROBE_GATHER": "1" if gather else "0", "CHIRP_CONSUMER_GATHER_MS": "1000"}
    with probe_process(topic, f"g-{topic.name}", **extra):
        await eventually(lambda: rows(pg, topic), until=lambda r: first.id in r, timeout=60)
        trickle = [post(topic, f"trickle {i}") for i in range(20)]
        for event in trickle:
            await send(publisher, topic, [event])
            await asyncio.sleep(0.02)
        await eventually(lambda: rows(pg, topic), until=lambda r: len(r) == 21, timeout=30)
    batches = (await batch_sizes(pg, topic))[1:]  # the first event's batch came before the trickle
    assert sum(batches) == 20
    if gather:
        assert len(batches) <= 3, f"batches of {batches}"
    else:
        assert len(batches) >= 10, f"batches of {batches}"


async def test_sigkill_after_write_before_commit_redelivers_once(settings, publisher, pg, topic) -> None:
    group = f"g-{topic.name}"
    blocker = post(topic, "block")
    await send(publisher, topic, [blocker])
    with probe_process(topic, group) as proc:
        await eventually(lambda: rows(pg, topic), until=lambda r: blocker.id in r, timeout=60)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # The restarted consumer gets the event again (it was never committed); the model holds it once.
    after = [post(topic, "after")]
    await send(publisher, topic, after)
    with probe_process(topic, group):
        seen = await eventually(lambda: rows(pg, topic), until=lambda r: after[0].id in r, timeout=60)
    assert len(seen) == 2
    assert seen[blocker.id] == 2, "the uncommitted event was delivered again after the crash"


async def test_poison_events_are_dead_lettered_and_the_rest_processed(settings, publisher, pg, topic) -> None:
    group = f"g-{topic.name}"
    good_before = [post(topic, f"before {i}") for i in range(5)]
    poison = post(topic, "poison")
    unknown_version = orjson.loads(post(topic, "v2").model_dump_json()) | {"version": 2}
    good_after = [post(topic, f"after {i}") for i in range(5)]
    await send(publisher, topic, good_before)
    await publisher.publish_raw(topic.name, b"k", b"{not json", {})
    await publisher.publish_raw(topic.name, b"k", orjson.dumps(unknown_version), {})
    await publisher.publish_raw(topic.name, b"k", orjson.dumps({"type": "post-created", "version": 1}), {})
    await send(publisher, topic, [poison])
    await send(publisher, topic, good_after)
    with probe_process(topic, group):
        good = {e.id for e in good_before + good_after}
        seen = await eventually(lambda: rows(pg, topic), until=lambda r: good <= set(r), timeout=60)
        letters = await dead_letters(settings, group, 4)
    assert poison.id not in seen
    reasons = sorted(d["dlq_reason"] for d in letters)
    assert reasons == ["handler_error", "invalid_json", "invalid_payload", "unknown_version"]
    handler_error = next(d for d in letters if d["dlq_reason"] == "handler_error")
    assert handler_error["dlq_attempts"] == "3"
    assert "poison event" in handler_error["dlq_error"]
    assert handler_error["dlq_topic"] == topic.name and handler_error["dlq_consumer"] == group
    assert orjson.loads(handler_error["value"])["id"] == poison.id
    assert all(d["dlq_offset"].isdigit() and d["dlq_partition"].isdigit() for d in letters)


async def test_sigterm_mid_burst_loses_nothing(settings, publisher, pg, topic) -> None:
    group = f"g-{topic.name}"
    events = [post(topic, f"burst {i}") for i in range(5000)]
    await send(publisher, topic, events)
    with probe_process(topic, group) as proc:
        await eventually(lambda: rows(pg, topic), until=lambda r: len(r) >= 300, timeout=60)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, "graceful shutdown exits 0"
    with probe_process(topic, group):
        seen = await eventually(lambda: rows(pg, topic), until=lambda r: len(r) == 5000, timeout=120)
    assert set(seen) == {e.id for e in events}
    assert set(seen.values()) == {1}, "the batch in flight at SIGTERM was finished and committed"
