"""`chirp lag` and `chirp topics` on the real broker: exact lag after events reach a stopped consumer group."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import orjson
from typer.testing import CliRunner

from chirp.settings import Settings
from ops import _kafka
from ops.cli import ops_app
from ops.lag import measure
from ops.topics import describe
from producers.broker import ensure_topics
from schemas.topics import Topic
from tests.integration import replay_probe as probe
from tests.scratch import scratch_id


async def commit_at_end(settings: Settings, group: str, topic: Topic) -> None:
    """A consumer group that read everything and committed, then stopped."""
    async with _kafka.reader(settings, group_id=group) as kafka:
        tps = await _kafka.partitions(kafka, [topic.name])
        ends = await kafka.end_offsets(tps)
        kafka.assign(tps)
        await kafka.commit(ends)


async def test_lag_is_exactly_the_events_produced_since_the_group_committed(settings, publisher) -> None:
    uid = scratch_id()
    topic, group = Topic(f"lag-{uid}", key="post_id", partitions=3), f"lag-{uid}"
    await ensure_topics(settings, (topic,))
    await probe.send(publisher, topic, probe.posts(11))
    await commit_at_end(settings, group, topic)
    assert sum(r.lag for r in await measure(settings, [group])) == 0
    await probe.send(publisher, topic, probe.posts(37))

    rows = await measure(settings, [group])
    assert {r.partition for r in rows} == {0, 1, 2}
    assert sum(r.lag for r in rows) == 37
    assert sum(r.committed for r in rows) == 11 and sum(r.end for r in rows) == 48
    assert all(r.age_s() is not None and r.age_s() >= 0 for r in rows if r.lag)
    assert all(r.age_s() is None for r in rows if not r.lag)

    runner = CliRunner()
    shown = await asyncio.to_thread(runner.invoke, ops_app, ["lag", "--group", group, "--json"])
    assert shown.exit_code == 0, shown.output
    assert sum(r["lag"] for r in orjson.loads(shown.output)) == 37
    table = await asyncio.to_thread(runner.invoke, ops_app, ["lag", "--group", group], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and group in table.output
    worst = max(r.lag for r in rows)
    over = await asyncio.to_thread(runner.invoke, ops_app, ["lag", "-g", group, "--max-lag", str(worst - 1)])
    assert over.exit_code == 1, "a script can tell a partition is behind"
    within = await asyncio.to_thread(runner.invoke, ops_app, ["lag", "-g", group, "--max-lag", str(worst)])
    assert within.exit_code == 0


async def test_topics_counts_messages_with_oldest_and_newest(settings, publisher) -> None:
    topic = Topic(f"topics-{scratch_id()}", key="post_id", partitions=2)
    await ensure_topics(settings, (topic,))
    await probe.send(publisher, topic, probe.posts(25))
    rows = [r for r in await describe(settings) if r.topic == topic.name]
    assert [r.partition for r in rows] == [0, 1]
    assert sum(r.messages for r in rows) == 25
    for r in rows:
        assert r.oldest_offset == 0 and r.newest_offset == r.messages - 1
        assert r.oldest_at is not None and r.newest_at is not None and r.oldest_at <= r.newest_at
    shown = await asyncio.to_thread(CliRunner().invoke, ops_app, ["topics", "--json"])
    assert shown.exit_code == 0, shown.output
    assert sum(r["messages"] for r in orjson.loads(shown.output) if r["topic"] == topic.name) == 25


async def test_tables_keep_long_names_whole_without_a_terminal(settings) -> None:
    """Run from cron or CI (no terminal, no COLUMNS), `chirp topics` shows a 60-character topic name whole."""
    topic = Topic(f"a-topic-with-a-name-longer-than-a-narrow-column-{scratch_id()}", key="post_id")
    await ensure_topics(settings, (topic,))
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    shown = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "ops", "topics"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert topic.name in shown.stdout


async def test_lag_honours_the_group_prefix_and_a_consumers_own_group(settings, publisher) -> None:
    """With CHIRP_CONSUMER_GROUP_PREFIX set (a shared broker), `chirp lag` shows that prefix's groups and `-g NAME`
    the consumer NAME's group under it; `CHIRP_CONSUMER_GROUPS` (what `chirp consume --group` sets) is honoured too."""
    uid = scratch_id()
    topic = Topic(f"lagp-{uid}", key="post_id", partitions=1)
    await ensure_topics(settings, (topic,))
    await probe.send(publisher, topic, probe.posts(3))
    prefix = f"{uid}-"
    await commit_at_end(settings, f"{prefix}probe", topic)
    await commit_at_end(settings, f"own-{uid}", topic)
    runner = CliRunner()

    async def groups_shown(*args: str, **env: str) -> set[str]:
        shown = await asyncio.to_thread(runner.invoke, ops_app, ["lag", "--json", *args], env=env)
        assert shown.exit_code == 0, shown.output
        return {r["group"] for r in orjson.loads(shown.stdout)}

    assert await groups_shown("-g", "probe", CHIRP_CONSUMER_GROUP_PREFIX=prefix) == {f"{prefix}probe"}
    assert await groups_shown(CHIRP_CONSUMER_GROUP_PREFIX=prefix) == {f"{prefix}probe"}
    mine = orjson.dumps({"probe": f"own-{uid}"}).decode()
    assert await groups_shown("-g", "probe", CHIRP_CONSUMER_GROUPS=mine) == {f"own-{uid}"}
    assert await groups_shown("-g", f"own-{uid}") == {f"own-{uid}"}, "a group id as it is"
