"""`chirp dlq` on the real services: list and show dead letters, retry them after the fix, drop the rest."""

from __future__ import annotations

import asyncio

import asyncpg
import orjson
import redis.asyncio as aioredis
from typer.testing import CliRunner

from chirp.settings import Settings
from ops import _kafka
from ops.cli import ops_app
from ops.dlq import letters
from producers.broker import Publisher
from tests.conftest import eventually
from tests.integration import replay_probe as probe
from tests.scratch import scratch_id


async def cli(*args: str) -> tuple[int, str]:
    """Run an operator command as a script would (in a thread: it runs its own event loop)."""
    result = await asyncio.to_thread(CliRunner().invoke, ops_app, list(args), env={"COLUMNS": "250"})
    return result.exit_code, result.output


async def post_ids(pg: asyncpg.Pool, table: str) -> set[str]:
    try:
        return {r["post_id"] for r in await pg.fetch(f"SELECT post_id FROM {table}")}
    except asyncpg.UndefinedTableError:
        return set()


async def test_dead_letters_are_listed_shown_retried_after_the_fix_and_dropped(
    settings: Settings, publisher: Publisher, pg: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    group, table, topic = await probe.fresh(settings, "dlq", partitions=2)
    await redis_client.set(probe.fail_flag(group), "1")  # the bug: every batch fails while this is set
    failing = probe.posts(3)
    env = {"CHIRP_CONSUMER_MAX_ATTEMPTS": "2", "CHIRP_CONSUMER_RETRY_BASE_MS": "20"}
    with probe.running(group, topic, table, **env):
        await probe.send(publisher, topic, failing)
        found = await eventually(lambda: letters(settings, group), until=lambda x: len(x) == 3, timeout=60)
        assert {orjson.loads(x.value)["id"] for x in found} == {e.id for e in failing}
        assert all(x.reason == "handler_error" and x.attempts == 2 and x.origin[0] == topic.name for x in found)

        code, out = await cli("dlq", "list", group, "--json")
        assert code == 0
        listed = orjson.loads(out)
        assert sorted(x["id"] for x in listed) == sorted(x.id for x in found)
        assert all("flag set" in x["error"] and x["consumer"] == group for x in listed)
        code, out = await cli("dlq", "list", group)
        assert code == 0 and found[0].id in out
        code, out = await cli("dlq", "show", group, "--id", found[0].id)
        assert code == 0 and "probe failing: flag set" in out and orjson.loads(found[0].value)["id"] in out

        await redis_client.delete(probe.fail_flag(group))  # the fix
        code, out = await cli("dlq", "retry", group)
        assert code == 0 and "retried 3" in out
        await eventually(
            lambda: post_ids(pg, table), until=lambda ids: ids == {e.payload.post_id for e in failing}, timeout=60
        )
        code, out = await cli("dlq", "list", group, "--json")
        assert code == 0 and orjson.loads(out) == [], "handled letters are hidden"
        code, out = await cli("dlq", "list", group, "--all", "--json")
        assert {x["decision"] for x in orjson.loads(out)} == {"retried"}

        # A letter nobody will fix: dropped, never processed, hidden from then on.
        await redis_client.set(probe.fail_flag(group), "1")
        doomed = probe.posts(1)
        await probe.send(publisher, topic, doomed)
        pending = await eventually(lambda: letters(settings, group), until=lambda x: len(x) == 1, timeout=60)
        await redis_client.delete(probe.fail_flag(group))
        code, out = await cli("dlq", "drop", group, "--id", pending[0].id, "--note", "test data")
        assert code == 0 and "dropped 1" in out
        assert await letters(settings, group) == []
        assert doomed[0].payload.post_id not in await post_ids(pg, table)

    code, out = await cli("dlq", "show", group, "--id", f"{group}:0:999999")
    assert code == 1, "an unknown letter id is an error a script sees"
    await pg.execute(f"DROP TABLE IF EXISTS {table}")


async def test_a_bug_failing_every_event_opens_the_circuit_and_the_events_wait_for_the_fix(
    settings: Settings, publisher: Publisher, pg: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    group, table, topic = await probe.fresh(settings, "cb", partitions=1)
    await redis_client.set(probe.fail_flag(group), "1")  # the bug
    events = probe.posts(8)
    env = {
        "CHIRP_CONSUMER_MAX_ATTEMPTS": "1",
        "CHIRP_CONSUMER_BREAKER_AFTER": "3",
        "CHIRP_CONSUMER_BREAKER_RETRY_MS": "100",
    }
    with probe.running(group, topic, table, **env):
        await probe.send(publisher, topic, events)
        found = await eventually(lambda: letters(settings, group), until=lambda x: len(x) >= 3, timeout=60)
        await asyncio.sleep(1.5)  # ~15 more tries of the held event
        assert len(await letters(settings, group)) == 3, "after 3 in a row the circuit holds the next event"
        assert {orjson.loads(x.value)["id"] for x in found} == {e.id for e in events[:3]}
        async with _kafka.admin(settings) as admin:
            committed = await _kafka.committed(admin, settings.group(group))
        assert sum(committed.values()) <= 3 and not await post_ids(pg, table), "nothing past the held event"

        await redis_client.delete(probe.fail_flag(group))  # the fix
        held = {e.payload.post_id for e in events[3:]}
        await eventually(lambda: post_ids(pg, table), until=lambda ids: ids == held, timeout=60)
        assert len(await letters(settings, group)) == 3, "the held events were handled, not dead-lettered"
    await pg.execute(f"DROP TABLE IF EXISTS {table}")


async def test_a_retry_reaches_only_the_group_that_failed_and_garbage_is_not_retried(
    settings: Settings, publisher: Publisher, pg: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    """Two groups read one topic; one fails a good event while both dead-letter a garbage record. The retry
    brings the good event to the failed group alone, and the garbage stays one pending letter."""
    failed, failed_table, topic = await probe.fresh(settings, "dlqa", partitions=1)
    other = f"dlqb-{scratch_id()}"
    other_table = other.replace("-", "_")
    await redis_client.set(probe.fail_flag(failed), "1")
    good = probe.posts(1)
    env = {"CHIRP_CONSUMER_MAX_ATTEMPTS": "2", "CHIRP_CONSUMER_RETRY_BASE_MS": "20"}
    with probe.running(failed, topic, failed_table, **env), probe.running(other, topic, other_table, **env):
        await publisher.publish_raw(topic.name, b"k", b"\x00 not an event {", {})
        await probe.send(publisher, topic, good)
        pending = await eventually(lambda: letters(settings, failed), until=lambda x: len(x) == 2, timeout=60)
        await eventually(lambda: letters(settings, other), until=lambda x: len(x) == 1, timeout=60)
        await eventually(lambda: post_ids(pg, other_table), until=lambda ids: len(ids) == 1, timeout=60)
        garbage = next(x for x in pending if x.reason == "invalid_json")
        good_letter = next(x for x in pending if x.reason == "handler_error")
        await redis_client.delete(probe.fail_flag(failed))  # the fix

        async with _kafka.reader(settings) as kafka:
            topic_ends = await kafka.end_offsets(await _kafka.partitions(kafka, [topic.name]))
        code, out = await cli("dlq", "retry", failed, "--dry-run")
        assert code == 0 and "would retry 1 event(s); 1 fail validation" in out
        assert good_letter.id in out and garbage.id in out and "stays dead-lettered" in out
        still = {x.id for x in await letters(settings, failed)}
        assert still == {garbage.id, good_letter.id}, "a dry run decides nothing"

        code, out = await cli("dlq", "retry", failed)
        assert code == 0 and "retried 1 event(s); 1 fail validation, not retried" in out
        await eventually(
            lambda: post_ids(pg, failed_table), until=lambda ids: ids == {good[0].payload.post_id}, timeout=60
        )
        async with _kafka.reader(settings) as kafka:
            assert await kafka.end_offsets(list(topic_ends)) == topic_ends, "nothing went to the shared topic"
        assert int(await redis_client.get(probe.seen_counter(failed)) or 0) == 1
        assert int(await redis_client.get(probe.seen_counter(other)) or 0) == 1, "the other group saw it once"
        remaining = await letters(settings, failed)
        assert [(x.id, x.copies) for x in remaining] == [(garbage.id, 1)], "the garbage stays one pending letter"
        assert [x.copies for x in await letters(settings, other)] == [1]
        code, out = await cli("dlq", "retry", failed)
        assert code == 0 and "retried 0 event(s); 1 fail validation" in out
        assert [x.id for x in await letters(settings, failed)] == [garbage.id]
    for table in (failed_table, other_table):
        await pg.execute(f"DROP TABLE IF EXISTS {table}")
