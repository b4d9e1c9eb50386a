"""Consumers scale by processes: two processes of one consumer share its partitions (one group, two members);
killing one (SIGKILL: no commit, no leave) hands its partitions to the other, and the counters come out exact —
nothing lost, nothing counted twice — because every write is idempotent and offsets are committed after the batch."""

from __future__ import annotations

import signal
from pathlib import Path

import asyncpg
from aiokafka.errors import KafkaError

from chirp.kafka_admin import admin, group_states
from producers.broker import Publisher, make_broker
from schemas.events import InteractionData, PostLike, new_id
from tests.cluster.stack import Cluster
from tests.conftest import eventually

POSTS = 20
LIKERS = 60  # per post: 1,200 likes, published in two halves around the kill


async def test_two_processes_share_a_consumer_and_one_takes_over(
    cluster_topics: Cluster, pg: asyncpg.Pool, tmp_path: Path
) -> None:
    cluster = cluster_topics
    group = cluster.settings.group("interactions")
    posts = [new_id() for _ in range(POSTS)]
    likes = [PostLike(actor=u, payload=InteractionData(user_id=u, post_id=p)) for p in posts for u in _users()]
    first, second = likes[::2], likes[1::2]  # every post gets likes in both halves

    async def members() -> int:
        try:
            async with admin(cluster.settings) as client:
                state = (await group_states(client, [group]))[group]
        except KafkaError:  # the coordinator is still being elected (a new cluster's offsets topic)
            return -1
        return state.members if state.state == "Stable" else -1

    procs = [cluster.consume(["interactions"], tmp_path / f"interactions-{i}.log") for i in range(2)]
    await eventually(members, until=lambda n: n == 2, timeout=120)

    broker = make_broker(cluster.settings)
    await broker.connect()
    try:
        publisher = Publisher(broker)
        await publisher.publish_many(first)

        async def counted() -> int:
            return int(await pg.fetchval("SELECT count(*) FROM interactions WHERE post_id = ANY($1::text[])", posts))

        # Kill one process while it works through its share (some of its batches not committed yet).
        await eventually(counted, until=lambda n: n > 0, timeout=120)
        Cluster.stop_process(procs[0], signal.SIGKILL)
        await publisher.publish_many(second)
    finally:
        await broker.stop()

    await eventually(members, until=lambda n: n == 1, timeout=120)
    await eventually(counted, until=lambda n: n == len(likes), timeout=120)

    async def counts() -> set[int]:
        rows = await pg.fetch("SELECT like_count FROM post_counters WHERE post_id = ANY($1::text[])", posts)
        return {r["like_count"] for r in rows} if len(rows) == POSTS else set()

    assert await eventually(counts, until=lambda c: c == {LIKERS}, timeout=60) == {LIKERS}


def _users() -> list[str]:
    return [new_id() for _ in range(LIKERS)]
