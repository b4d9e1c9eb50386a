"""A consumer for the operator-tool tests, and helpers to run it: its read model is one table and Redis sets.

Configured by environment when it runs in a child process (`chirp consume tests.integration.replay_probe`):
CHIRP_RP_GROUP, CHIRP_RP_TOPIC, CHIRP_RP_TABLE. While the Redis key `rp-fail:<group>` exists every batch fails
(the dead-letter tests set it, then "fix the cause" by deleting it); `rp-seen:<group>` counts the events it
handled. The read model: a row per post in the table and, in Redis, a set of post ids per author under
`rp:<group>:` (idempotent: upsert and SADD).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from chirp.settings import Settings
from consumers.runtime import Consumer, Context
from ops.replay import ReadModel, read_model_of
from producers.broker import Publisher, ensure_topics
from schemas.events import PostCreated, PostCreatedData, new_id
from schemas.topics import Topic
from tests.scratch import scratch_id


def fail_flag(group: str) -> str:
    return f"rp-fail:{group}"


def seen_counter(group: str) -> str:
    """Events the probe handled, counted outside its read model (a replay's handlers count here too)."""
    return f"rp-seen:{group}"


def make(group: str, topic: Topic, table: str) -> tuple[Consumer, ReadModel]:
    """A probe consumer for one test, and the read model it owns."""
    prefix = f"rp:{group}:"
    consumer = Consumer(
        group,
        "Test probe for replays and dead letters",
        tables=(table,),
        redis_prefixes=(prefix,),
        reader_indexes=(f"{table}_by_author",),  # a replay builds it late, like the full-text one
    )

    @consumer.on_setup
    async def create_table(ctx: Context, _: Consumer) -> None:
        if await ctx.pg.fetchval("SELECT to_regclass($1) IS NOT NULL", table):
            return  # as a migration: a replay's shadow copy is cloned from the live table
        await ctx.pg.execute(
            f"""CREATE TABLE IF NOT EXISTS {table} (
                post_id text PRIMARY KEY, author_id text NOT NULL, body text NOT NULL, occurred_at timestamptz NOT NULL
            )"""
        )
        await ctx.pg.execute(f"CREATE INDEX IF NOT EXISTS {table}_by_author ON {table} (author_id, post_id)")
        # A replay builds this one after the rows are in.
        words = f"CREATE INDEX IF NOT EXISTS {table}_words ON {table} USING gin (to_tsvector('simple', body))"
        await ctx.pg.execute(words)

    @consumer.on(topic, batch=True, model=PostCreated)
    async def on_post_created(events: list[PostCreated], ctx: Context) -> None:
        if await ctx.redis.exists(fail_flag(group)):
            raise RuntimeError("probe failing: flag set")
        await ctx.pg.execute(
            f"""INSERT INTO {table} (post_id, author_id, body, occurred_at)
                SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])
                ON CONFLICT (post_id) DO NOTHING""",
            [e.payload.post_id for e in events],
            [e.payload.author_id for e in events],
            [e.payload.body for e in events],
            [e.occurred_at for e in events],
        )
        async with ctx.redis.pipeline(transaction=False) as pipe:
            for e in events:
                pipe.sadd(f"{prefix}author:{e.payload.author_id}", e.payload.post_id)
            await pipe.execute()
        await ctx.redis.incrby(seen_counter(group), len(events))

    return consumer, read_model_of(consumer)


consumer, _ = make(
    os.environ.get("CHIRP_RP_GROUP", "replay-probe"),
    Topic(os.environ.get("CHIRP_RP_TOPIC", "replay-probe"), key="post_id"),
    os.environ.get("CHIRP_RP_TABLE", "replay_probe"),
)


# Helpers for the tests -------------------------------------------------------------------------------------


async def fresh(settings: Settings, kind: str, partitions: int) -> tuple[str, str, Topic]:
    """A new probe's group, table and topic (created), all named `{kind}-<unique id>`."""
    uid = scratch_id()
    topic = Topic(f"{kind}-{uid}", key="post_id", partitions=partitions)
    await ensure_topics(settings, (topic,))
    return f"{kind}-{uid}", f"{kind}_{uid}", topic


def posts(n: int, authors: int = 7) -> list[PostCreated]:
    return [
        PostCreated(payload=PostCreatedData(post_id=new_id(), author_id=f"a{i % authors}", body=f"post {i}"))
        for i in range(n)
    ]


async def send(publisher: Publisher, topic: Topic, events: list[PostCreated]) -> None:
    """Publish to a test topic (not the event's own), keyed as the Publisher would."""
    await asyncio.gather(
        *(publisher.publish_raw(topic.name, e.key.encode(), e.model_dump_json().encode(), {}) for e in events)
    )


async def send_slowly(publisher: Publisher, topic: Topic, events: list[PostCreated], chunk: int) -> None:
    """Publish `chunk` events at a time with short pauses, as posts arrive while a replay runs."""
    for i in range(0, len(events), chunk):
        await send(publisher, topic, events[i : i + chunk])
        await asyncio.sleep(0.02)


@contextmanager
def running(group: str, topic: Topic, table: str, **env: str) -> Iterator[subprocess.Popen[bytes]]:
    """The probe as a live consumer in a child process (`chirp consume`), stopped with SIGTERM at the end."""
    environ = {**os.environ, "CHIRP_RP_GROUP": group, "CHIRP_RP_TOPIC": topic.name, "CHIRP_RP_TABLE": table, **env}
    cmd = [sys.executable, "-m", "ops", "consume", "tests.integration.replay_probe", "--metrics-port", "0"]
    proc = subprocess.Popen(cmd, env=environ)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
