"""A consumer used by the runtime tests: records each delivery of a post-created event in `probe_events`.

Configured by environment (it runs in a child process): CHIRP_PROBE_TOPIC, CHIRP_PROBE_GROUP, CHIRP_PROBE_GATHER
(`1`: a consumer that gathers batches). A body of `poison` always raises; a body of `block` waits forever after its
first write (a test kills it before the commit). Each batch's size goes in `probe_batches`.
"""

from __future__ import annotations

import asyncio
import os

from consumers.runtime import Consumer, Context
from schemas.events import PostCreated
from schemas.topics import Topic

TOPIC = Topic(os.environ.get("CHIRP_PROBE_TOPIC", "probe"), key="post_id")
consumer = Consumer(
    os.environ.get("CHIRP_PROBE_GROUP", "probe"), "Test probe", gather=os.environ.get("CHIRP_PROBE_GATHER") == "1"
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS probe_events (
    topic text NOT NULL, event_id text NOT NULL, post_id text NOT NULL, deliveries integer NOT NULL DEFAULT 1,
    PRIMARY KEY (topic, event_id)
);
CREATE TABLE IF NOT EXISTS probe_batches (topic text NOT NULL, size integer NOT NULL)"""


@consumer.on_setup
async def create_table(ctx: Context, _: Consumer) -> None:
    await ctx.pg.execute(SCHEMA)


@consumer.on(TOPIC, batch=True, model=PostCreated)
async def on_post_created(events: list[PostCreated], ctx: Context) -> None:
    if any(e.payload.body == "poison" for e in events):
        raise RuntimeError("poison event")
    rows = await ctx.pg.fetch(
        """INSERT INTO probe_events (topic, event_id, post_id)
           SELECT $1, unnest($2::text[]), unnest($3::text[])
           ON CONFLICT (topic, event_id) DO UPDATE SET deliveries = probe_events.deliveries + 1
           RETURNING event_id, deliveries""",
        TOPIC.name,
        [e.id for e in events],
        [e.payload.post_id for e in events],
    )
    await ctx.pg.execute("INSERT INTO probe_batches VALUES ($1, $2)", TOPIC.name, len(events))
    first_time = {r["event_id"] for r in rows if r["deliveries"] == 1}
    if any(e.payload.body == "block" and e.id in first_time for e in events):
        await asyncio.Event().wait()  # written, never committed: the test kills the process here
