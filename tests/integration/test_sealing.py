"""Sealed events against the real key store: opened once per event, an erased key's events skipped cleanly, a
key missing from the store an outage waited out (never a silent skip), a tampered box a dead letter."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
from aiokafka.structs import ConsumerRecord

from chirp.settings import Settings
from consumers.runtime import OUTAGE, Consumer, Context, Runner
from consumers.runtime.metrics import ERASED, FAILED
from producers.sealing import seal
from schemas import topics
from schemas.events import PostCreated, PostCreatedData, new_id
from store.keys import PgKeyStore
from tests.conftest import eventually


class RecordingPublisher:
    def __init__(self) -> None:
        self.dead: list[dict[str, str]] = []

    async def publish_raw(self, topic: str, key: bytes | None, value: bytes, headers: dict[str, str]) -> None:
        self.dead.append({"topic": topic, **headers})


def record(value: bytes, headers: dict[str, str], offset: int = 0) -> ConsumerRecord:
    return ConsumerRecord(
        topic=topics.POST_CREATED.name, partition=0, offset=offset, timestamp=0, timestamp_type=0, key=b"k",
        value=value, checksum=None, serialized_key_size=1, serialized_value_size=len(value),
        headers=[(k, v.encode()) for k, v in headers.items()],
    )  # fmt: skip


async def test_sealed_events_open_wait_out_a_lost_key_and_skip_an_erased_one(
    settings: Settings, pg: asyncpg.Pool
) -> None:
    name = f"sealing-{new_id()}"
    consumer = Consumer(name)
    handled: list[PostCreated] = []

    @consumer.on(topics.POST_CREATED, batch=True)
    async def on_posts(events: list[PostCreated], ctx: Context) -> None:
        handled.extend(events)

    publisher = RecordingPublisher()
    waiting = settings.model_copy(update={"erasure_lost_keys": "wait", "consumer_retry_base_ms": 10})
    ctx = Context(settings=waiting, pg=pg, redis=None, publisher=publisher)  # type: ignore[arg-type]
    runner = Runner(consumer, ctx, asyncio.Event())
    post_id = new_id()
    event = PostCreated(payload=PostCreatedData(post_id=post_id, author_id=new_id(), body="words only they wrote"))
    value, headers = await seal(event, PgKeyStore(pg))
    assert b"words only they wrote" not in value and headers["keys"].startswith(f"p:{post_id} u:")

    await runner.run_batch([record(value, headers)])
    assert handled == [event], "opened with its key, equal to what was published"

    # The key store loses the key (a restore from an old backup): an outage, held until the key is back.
    key_id = f"p:{post_id}"
    row = await pg.fetchrow("DELETE FROM erasure_keys WHERE key_id = $1 RETURNING owner_id, key", key_id)
    ctx.keys.forget()
    held = asyncio.create_task(runner.run_batch([record(value, headers, offset=1)]))
    gauge = OUTAGE.labels(name, "key_store_incomplete")
    await eventually(lambda: asyncio.sleep(0, gauge._value.get()), until=lambda v: v == 1.0, timeout=10)
    await asyncio.sleep(0.3)
    assert not held.done() and len(handled) == 1 and publisher.dead == [], "nothing skipped, nothing dead-lettered"
    await pg.execute("INSERT INTO erasure_keys (key_id, owner_id, key) VALUES ($1, $2, $3)", key_id, *row)
    await asyncio.wait_for(held, 10)
    assert handled == [event, event] and gauge._value.get() == 0.0

    # Erased: skipped, counted, no dead letter, no error.
    skipped = ERASED.labels(name, topics.POST_CREATED.name)
    before = skipped._value.get()
    assert await ctx.keys.erase(key_id, at=datetime.now(UTC)) == 1
    await runner.run_batch([record(value, headers, offset=2)])
    failed = FAILED.labels(name, topics.POST_CREATED.name)._value.get()
    assert len(handled) == 2 and publisher.dead == [] and skipped._value.get() == before + 1
    assert failed == 0, "an erased event is no error either"

    # A box that does not open with its key (tampered): a dead letter naming why.
    other = PostCreated(payload=PostCreatedData(post_id=new_id(), author_id=new_id(), body="fine"))
    good, good_headers = await seal(other, PgKeyStore(pg))
    tampered = good.replace(b'"sealed":"', b'"sealed":"AAAA')
    await runner.run_batch([record(tampered, good_headers, offset=3)])
    assert [d["dlq_reason"] for d in publisher.dead] == ["unsealable"]


async def test_nothing_new_is_sealed_with_an_erased_key(pg: asyncpg.Pool) -> None:
    post_id = new_id()
    event = PostCreated(payload=PostCreatedData(post_id=post_id, author_id=new_id(), body="late"))
    store = PgKeyStore(pg)
    await store.erase(f"p:{post_id}", at=datetime.now(UTC))
    try:
        await seal(event, store)
    except Exception as exc:  # KeyErased
        assert type(exc).__name__ == "KeyErased"
    else:
        raise AssertionError("sealed with an erased key")


async def test_keys_created_side_by_side_are_one_key(pg: asyncpg.Pool) -> None:
    """Two events of one post sealed at once (post-created and post-parsed) get the same key, never 'erased'."""
    for _ in range(20):
        key_id = f"p:{new_id()}"
        first, second = await asyncio.gather(
            PgKeyStore(pg).sealing_key(key_id, "a"), PgKeyStore(pg).sealing_key(key_id, "a")
        )
        assert first == second and len(first) == 32
