"""A consumer whose handler does nothing: the runtime's own cost. Topic and group come from the environment."""

from __future__ import annotations

import os
import time

from consumers.runtime import Consumer, Context
from schemas.events import PostCreated
from schemas.topics import Topic

TOPIC = Topic(os.environ.get("CHIRP_BENCH_TOPIC", "bench"), key="post_id")
consumer = Consumer(os.environ.get("CHIRP_BENCH_GROUP", "bench"), "No-op consumer for benchmarks")
LATENCY_LOG = os.environ.get("CHIRP_BENCH_LATENCY_LOG", "")


@consumer.on(TOPIC, batch=True, model=PostCreated)
async def on_post_created(events: list[PostCreated], ctx: Context) -> None:
    if LATENCY_LOG:  # scheduled send time travels in the body; append handler-side latencies
        now = time.time()
        with open(LATENCY_LOG, "a") as out:  # noqa: ASYNC230 (a benchmark's local file, microseconds)
            out.writelines(f"{now - float(e.payload.body):.6f}\n" for e in events)
