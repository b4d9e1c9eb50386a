"""The runtime's policy without Kafka: decoding, retries, outages, dead letters, per-partition order."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
import redis.exceptions
from aiokafka.errors import KafkaConnectionError
from aiokafka.structs import ConsumerRecord
from structlog.testing import capture_logs

from chirp.settings import Settings
from consumers.runtime import OUTAGE, Consumer, Context, PermanentError, Rejected, Runner, decode
from schemas import topics
from schemas.events import PostCreated, PostCreatedData


class RecordingPublisher:
    """Stands in for Kafka: keeps what would be published to the dead-letter topic."""

    def __init__(self) -> None:
        self.dead: list[dict[str, str]] = []

    async def publish_raw(self, topic: str, key: bytes | None, value: bytes, headers: dict[str, str]) -> None:
        self.dead.append({"topic": topic, **headers})


def record(event: PostCreated | bytes, *, partition: int = 0, offset: int = 0) -> ConsumerRecord:
    value = event if isinstance(event, bytes) else event.model_dump_json().encode()
    return ConsumerRecord(
        topic=topics.POST_CREATED.name,
        partition=partition,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=b"k",
        value=value,
        checksum=None,
        serialized_key_size=1,
        serialized_value_size=len(value),
        headers=[],
    )


def post(body: str) -> PostCreated:
    return PostCreated(payload=PostCreatedData(post_id=body, author_id="a", body=body))


def runner(consumer: Consumer, publisher: RecordingPublisher, attempts: int = 3) -> Runner:
    settings = Settings(consumer_max_attempts=attempts, consumer_retry_base_ms=1, consumer_retry_max_ms=2)
    ctx = Context(settings=settings, pg=None, redis=None, publisher=publisher)  # type: ignore[arg-type]
    return Runner(consumer, ctx, asyncio.Event())


def test_decode_names_the_reason() -> None:
    good = post("hi")
    assert decode(record(good), PostCreated) == good
    cases = {
        b"{oops": "invalid_json",
        b"[1]": "invalid_payload",
        good.model_dump_json().replace('"version":1', '"version":2').encode(): "unknown_version",
        good.model_dump_json().replace("post-created", "post-deleted").encode(): "unknown_type",
        good.model_dump_json().replace('"body":"hi"', '"body":""').encode(): "invalid_payload",
    }
    for raw, reason in cases.items():
        with pytest.raises(Rejected) as caught:
            decode(record(raw), PostCreated)
        assert caught.value.reason == reason


async def test_a_failing_batch_is_retried_one_by_one_and_only_the_poison_is_dead_lettered() -> None:
    consumer = Consumer("t")
    handled: list[str] = []

    @consumer.on(topics.POST_CREATED, batch=True)
    async def on_posts(events: list[PostCreated], ctx: Context) -> None:
        if any(e.payload.body == "poison" for e in events):
            raise ValueError("boom")
        handled.extend(e.payload.body for e in events)

    publisher = RecordingPublisher()
    records = [record(post(b), offset=i) for i, b in enumerate(["a", "poison", "b"])]
    await runner(consumer, publisher).run_batch(records)
    assert handled == ["a", "b"]
    assert [d["dlq_reason"] for d in publisher.dead] == ["handler_error"]
    assert publisher.dead[0]["dlq_attempts"] == "3" and publisher.dead[0]["dlq_offset"] == "1"
    assert publisher.dead[0]["topic"] == topics.dead_letters("t").name


async def test_permanent_errors_skip_retries() -> None:
    consumer = Consumer("t")
    calls = 0

    @consumer.on(topics.POST_CREATED)
    async def on_post(event: PostCreated, ctx: Context) -> None:
        nonlocal calls
        calls += 1
        raise PermanentError("never")

    publisher = RecordingPublisher()
    await runner(consumer, publisher).run_batch([record(post("x"))])
    assert calls == 1
    assert publisher.dead[0]["dlq_reason"] == "rejected_by_handler"


async def test_outages_are_waited_out_not_dead_lettered() -> None:
    consumer = Consumer("t")
    failures = iter([ConnectionError(), ConnectionError(), ConnectionError(), ConnectionError(), None])

    @consumer.on(topics.POST_CREATED)
    async def on_post(event: PostCreated, ctx: Context) -> None:
        error = next(failures)
        if error:
            raise error

    publisher = RecordingPublisher()
    await runner(consumer, publisher, attempts=2).run_batch([record(post("x"))])
    assert publisher.dead == [], "an outage longer than the attempt budget must not dead-letter the event"


async def test_a_batch_meeting_a_full_disk_waits_as_one_batch_and_nothing_is_dead_lettered() -> None:
    """More failures than the attempt budget, and none of them the events' fault: the batch is tried again whole
    (not one event at a time, where each would spend its attempts), the gauge says so, the log says so twice."""
    consumer = Consumer("t")
    calls: list[list[str]] = []
    gauge: list[float] = []

    @consumer.on(topics.POST_CREATED, batch=True)
    async def on_posts(events: list[PostCreated], ctx: Context) -> None:
        calls.append([e.payload.body for e in events])
        gauge.append(OUTAGE.labels("t", "postgres_disk_full")._value.get())
        if len(calls) <= 6:
            raise asyncpg.DiskFullError("could not extend file: No space left on device")

    publisher = RecordingPublisher()
    records = [record(post(b), offset=i) for i, b in enumerate(["a", "b", "c"])]
    with capture_logs() as logs:
        await runner(consumer, publisher, attempts=2).run_batch(records)
    assert publisher.dead == []
    assert calls == [["a", "b", "c"]] * 7
    assert gauge == [0.0] + [1.0] * 6, "1 from the first failure until the batch went through"
    assert OUTAGE.labels("t", "postgres_disk_full")._value.get() == 0.0
    outage_lines = [e for e in logs if e["event"].startswith("outage")]
    assert [e["event"].split(":")[0] for e in outage_lines] == ["outage began", "outage over"]
    assert outage_lines[0]["reason"] == "postgres_disk_full" and outage_lines[1]["duration_s"] >= 0


async def test_an_event_meeting_redis_at_its_memory_limit_is_not_dead_lettered() -> None:
    consumer = Consumer("t")
    failures = 0

    @consumer.on(topics.POST_CREATED)
    async def on_post(event: PostCreated, ctx: Context) -> None:
        nonlocal failures
        failures += 1
        if failures <= 5:
            raise redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'.")

    publisher = RecordingPublisher()
    await runner(consumer, publisher, attempts=2).run_batch([record(post("x"))])
    assert publisher.dead == [] and failures == 6


async def test_a_poison_event_after_an_outage_is_still_dead_lettered() -> None:
    """The outage is waited out as a batch; then the one event that fails while the store answers is the
    event's fault."""
    consumer = Consumer("t")
    outage = iter([True, True, False])
    handled: list[str] = []

    @consumer.on(topics.POST_CREATED, batch=True)
    async def on_posts(events: list[PostCreated], ctx: Context) -> None:
        if next(outage, False):
            raise asyncpg.ReadOnlySQLTransactionError("cannot execute INSERT in a read-only transaction")
        if any(e.payload.body == "poison" for e in events):
            raise ValueError("boom")
        handled.extend(e.payload.body for e in events)

    publisher = RecordingPublisher()
    records = [record(post(b), offset=i) for i, b in enumerate(["a", "poison", "b"])]
    await runner(consumer, publisher).run_batch(records)
    assert handled == ["a", "b"]
    assert [(d["dlq_reason"], d["dlq_offset"]) for d in publisher.dead] == [("handler_error", "1")]


async def test_a_dead_letter_waits_for_kafka_to_take_it() -> None:
    class FlakyPublisher(RecordingPublisher):
        failures = 3

        async def publish_raw(self, topic: str, key: bytes | None, value: bytes, headers: dict[str, str]) -> None:
            if self.failures:
                self.failures -= 1
                raise KafkaConnectionError("broker away")
            await super().publish_raw(topic, key, value, headers)

    consumer = Consumer("k")

    @consumer.on(topics.POST_CREATED)
    async def on_post(event: PostCreated, ctx: Context) -> None: ...

    publisher = FlakyPublisher()
    await runner(consumer, publisher).run_batch([record(b"{oops")])
    assert [d["dlq_reason"] for d in publisher.dead] == ["invalid_json"]
    assert OUTAGE.labels("k", "kafka_connection")._value.get() == 0.0


async def test_partitions_run_concurrently_in_order_within_each() -> None:
    consumer = Consumer("t")
    seen: dict[int, list[int]] = {0: [], 1: []}

    @consumer.on(topics.POST_CREATED)
    async def on_post(event: PostCreated, ctx: Context) -> None:
        partition, offset = map(int, event.payload.body.split(":"))
        await asyncio.sleep(0.001 * (3 - offset))  # later offsets finish faster if run out of order
        seen[partition].append(offset)

    records = [record(post(f"{p}:{o}"), partition=p, offset=o) for o in range(3) for p in (0, 1)]
    await runner(consumer, RecordingPublisher()).run_batch(records)
    assert seen == {0: [0, 1, 2], 1: [0, 1, 2]}


def test_dead_letters_and_handlers_are_declared_once() -> None:
    consumer = Consumer("dup")

    @consumer.on(topics.POST_CREATED)
    async def first(event: Any, ctx: Context) -> None: ...

    with pytest.raises(ValueError):
        consumer.on(topics.POST_CREATED)(first)
