"""Likes under load: an open loop of likes and unlikes over many posts, while probes time how soon a like shows.

    .venv/bin/python bench/likes.py [--rate 500] [--seconds 60] [--posts 10000] [--users 1000]

Prints the figures and appends a JSON line to bench/results/likes.jsonl. It runs beside others on shared
services, inside the isolation variables the tests use: its database is `<CHIRP_POSTGRES_TEST_DB>_likes` (created
and emptied by each run), its Redis database `CHIRP_REDIS_DB` (10 when unset), and its topics and consumer group
carry `CHIRP_TOPIC_NAMESPACE` and `CHIRP_CONSUMER_GROUP_PREFIX` plus a run id (`bench-` when unset); both are
deleted at the end of the run.
- Data: `--posts` posts inserted straight into the posts read model (the gateway's 404 check reads it), and the
  interactions consumer (`chirp consume interactions`, a consumer group of its own) in a child process.
- Load: likes and unlikes (60/40) by `--users` users on random posts, each event published at its scheduled time
  (open loop: a slow broker does not slow the schedule down), for `--seconds` at `--rate` events per second.
- Visibility: every 100 ms a probe likes a post of its own and polls `GET /api/posts/{id}` (the in-process gateway)
  until `like_count` is 1; the time from the publish to the first answer showing it, p50 and p99. On the way, the
  time until Kafka acknowledged the like (`acked`), until a bare aiokafka consumer in this process received it
  (`delivered`: the same-run ceiling, what the broker and this machine's load cost before any of Chirp's consumer
  code runs) and until the consumer announced it applied (`applied`, from the interactions channel) say where the
  time goes; `chirp_p50/p99` is visible minus delivered per probe (the consumer, PostgreSQL and the read).
- Nothing lost: once the consumer has caught up, every post's `like_count` equals the count implied by the events
  published (last writer wins per user and post, as the consumer applies them).
- CPU-ms per like of the consumer process and of this one (utime+stime from /proc).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

# Names of this run, set before anything reads them (schemas.topics reads the namespace when imported); the
# consumer child inherits them.
os.environ["CHIRP_BENCH_RUN"] = f"likes{secrets.token_hex(3)}-"
os.environ["CHIRP_TOPIC_NAMESPACE"] = os.environ.get("CHIRP_TOPIC_NAMESPACE", "bench-") + os.environ["CHIRP_BENCH_RUN"]
os.environ["CHIRP_CONSUMER_GROUP_PREFIX"] = (
    os.environ.get("CHIRP_CONSUMER_GROUP_PREFIX", "bench-") + os.environ["CHIRP_BENCH_RUN"]
)
os.environ["CHIRP_POSTGRES_DB"] = os.environ.get("CHIRP_POSTGRES_TEST_DB", "chirp_test") + "_likes"
os.environ["CHIRP_REDIS_DB"] = os.environ.get("CHIRP_REDIS_DB", "10")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer

from bench import ensure_database
from chirp import kafka_admin
from chirp.settings import Settings
from gateway.app import create_app
from ops import _kafka
from producers.broker import Publisher, ensure_topics, make_broker
from schemas import topics
from schemas.events import InteractionData, PostLike, new_id
from schemas.topics import NAMESPACE
from store.interactions import CHANNEL
from store.postgres import connect

RESULTS = Path(__file__).with_name("results") / "likes.jsonl"
PROBE_EVERY_S = 0.1
TICKS = os.sysconf("SC_CLK_TCK")
COMMIT = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()


def cpu_ms(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / TICKS


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else float("nan")


async def prepare(settings: Settings) -> None:
    """The bench's database, created when missing, migrated, and emptied of earlier runs' posts and likes."""
    await ensure_database(settings)
    pool = await connect(settings, max_size=1)
    await pool.execute("TRUNCATE posts, interactions, quotes, post_counters")
    await pool.close()


async def cleanup(settings: Settings) -> None:
    """Delete this run's topics and consumer group (their names carry the run id)."""
    async with _kafka.admin(settings) as admin:
        for group in await _kafka.groups(admin):
            if group.startswith(settings.consumer_group_prefix):
                await _kafka.delete_group(admin, group)
        await admin.delete_topics([t for t in await admin.list_topics() if t.startswith(NAMESPACE)])


async def seed(settings: Settings, posts: int) -> list[str]:
    pool = await connect(settings, max_size=2)
    ids = [new_id() for _ in range(posts)]
    now = datetime.now(UTC)
    await pool.execute(
        "INSERT INTO posts (post_id, author_id, body, html, text, created_at) "
        "SELECT x, 'bench-author', 'b', '<p>b</p>', 'b', $2 FROM unnest($1::text[]) AS x",
        ids,
        now,
    )
    await pool.close()
    return ids


async def caught_up(settings: Settings, expected: Counter[str], timeout: float) -> tuple[int, int]:
    """(posts whose count matches, posts checked) once they all match or `timeout` passes."""
    pool = await connect(settings, max_size=2)
    deadline = time.monotonic() + timeout
    ids = sorted(expected)
    try:
        while True:
            rows = await pool.fetch("SELECT post_id, like_count FROM post_counters WHERE post_id = ANY($1)", ids)
            found = {r["post_id"]: r["like_count"] for r in rows}
            good = sum(found.get(i, 0) == expected[i] for i in ids)
            if good == len(ids) or time.monotonic() > deadline:
                return good, len(ids)
            await asyncio.sleep(0.5)
    finally:
        await pool.close()


async def run(args: argparse.Namespace, consumer: subprocess.Popen[bytes]) -> dict[str, object]:
    settings = Settings()
    posts = await seed(settings, args.posts)
    probes = await seed(settings, int(args.seconds / PROBE_EVERY_S) + 10)
    broker = make_broker(settings)
    await broker.connect()
    publisher = Publisher(broker)
    app = create_app(settings)
    users = [f"bench-user-{i}" for i in range(args.users)]
    latest: dict[tuple[str, str], tuple[datetime, bool]] = {}
    published = 0
    latencies: list[float] = []
    stages: dict[str, list[float]] = {"acked": [], "delivered": [], "applied": [], "chirp": []}
    # a probe's post -> when a bare Kafka consumer received its like, when the interactions consumer announced it
    waiting: dict[str, dict[str, asyncio.Future[float]]] = {"delivered": {}, "applied": {}}
    pending: set[asyncio.Task[None]] = set()
    redis = aioredis.Redis.from_url(settings.redis_url)
    pubsub = redis.pubsub()
    await pubsub.subscribe(CHANNEL)

    def arrived(stage: str, post_id: str, at: float) -> None:
        if (waiter := waiting[stage].get(post_id)) is not None and not waiter.done():
            waiter.set_result(at)

    async def announcements() -> None:
        async for message in pubsub.listen():
            if message["type"] == "message":
                at = time.monotonic()
                for _, post_id, _ in orjson.loads(message["data"])["changes"]:
                    arrived("applied", post_id, at)

    async def deliveries(kafka: AIOKafkaConsumer) -> None:
        while True:
            found = await kafka.getmany(timeout_ms=1000)
            at = time.monotonic()
            for record in (r for records in found.values() for r in records):
                arrived("delivered", orjson.loads(record.value or b"{}")["payload"]["post_id"], at)

    await ensure_topics(settings)
    kafka = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False)
    await kafka.start()
    kafka.assign(await kafka_admin.partitions(kafka, [topics.POST_LIKES.name]))
    await kafka.seek_to_end()
    listeners = [asyncio.create_task(announcements()), asyncio.create_task(deliveries(kafka))]
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as http,
        ):
            # Warm up: the consumer joins its group and reads what is on the topic already.
            warm = probes.pop()
            await publisher.publish(PostLike(payload=InteractionData(user_id="bench-warm", post_id=warm)))
            await _visible(http, warm, 120)

            async def send(event: PostLike) -> None:
                nonlocal published
                await publisher.publish(event)
                published += 1

            async def probe(post_id: str) -> None:
                for futures in waiting.values():
                    futures[post_id] = asyncio.get_running_loop().create_future()
                started = time.monotonic()
                await publisher.publish(PostLike(payload=InteractionData(user_id="bench-probe", post_id=post_id)))
                stages["acked"].append((time.monotonic() - started) * 1000)
                if await _visible(http, post_id, 30):
                    visible = time.monotonic()
                    latencies.append((visible - started) * 1000)
                    with contextlib.suppress(TimeoutError):
                        for stage, futures in waiting.items():
                            at = await asyncio.wait_for(futures.pop(post_id), 5)
                            stages[stage].append((at - started) * 1000)
                            if stage == "delivered":
                                stages["chirp"].append((visible - at) * 1000)

            cpu_before = (cpu_ms(consumer.pid), cpu_ms(os.getpid()))
            start = time.monotonic()
            total = int(args.rate * args.seconds)
            next_probe = start
            rng = random.Random(args.seed)
            for i in range(total):
                due = start + i / args.rate
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                now = time.monotonic()
                if now >= next_probe and probes:
                    task = asyncio.create_task(probe(probes.pop()))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                    next_probe += PROBE_EVERY_S
                user, post_id, liked = rng.choice(users), rng.choice(posts), rng.random() < 0.6
                event = PostLike(
                    type="post-liked" if liked else "post-unliked",
                    payload=InteractionData(user_id=user, post_id=post_id),
                )
                key = (user, post_id)
                if key not in latest or latest[key][0] <= event.occurred_at:
                    latest[key] = (event.occurred_at, liked)
                task = asyncio.create_task(send(event))
                pending.add(task)
                task.add_done_callback(pending.discard)
            elapsed = time.monotonic() - start
            await asyncio.gather(*pending)
            expected: Counter[str] = Counter({p: 0 for p in {k[1] for k in latest}})
            for (_, post_id), (_, liked) in latest.items():
                expected[post_id] += liked
            good, checked = await caught_up(settings, expected, 120)
            cpu_after = (cpu_ms(consumer.pid), cpu_ms(os.getpid()))
    finally:
        for task in listeners:
            task.cancel()
        await kafka.stop()
        await pubsub.aclose()
        await redis.aclose()
        await broker.stop()
    return {
        "at": datetime.now(UTC).isoformat(),
        "commit": COMMIT,
        "load": os.getloadavg(),
        "rate": args.rate,
        "seconds": args.seconds,
        "achieved_rate": round(total / elapsed, 1),
        "events": total,
        "published": published,
        "probes": len(latencies),
        "visible_p50_ms": round(percentile(latencies, 50), 1),
        "visible_p99_ms": round(percentile(latencies, 99), 1),
        "visible_mean_ms": round(statistics.fmean(latencies), 1) if latencies else None,
        **{f"{stage}_p{p}_ms": round(percentile(values, p), 1) for stage, values in stages.items() for p in (50, 99)},
        "posts_matching": good,
        "posts_checked": checked,
        "consumer_cpu_ms_per_like": round((cpu_after[0] - cpu_before[0]) / total, 3),
        "bench_cpu_ms_per_like": round((cpu_after[1] - cpu_before[1]) / total, 3),
    }


async def _visible(http: httpx.AsyncClient, post_id: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = await http.get(f"/api/posts/{post_id}")
        if response.status_code == 200 and response.json().get("like_count") == 1:
            return True
        await asyncio.sleep(0.002)
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--posts", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    settings = Settings()
    asyncio.run(prepare(settings))
    # The consumer, in this run's group on this run's topics.
    consumer = subprocess.Popen([sys.executable, "-m", "ops", "consume", "interactions", "--metrics-port", "0"])
    try:
        result = asyncio.run(run(args, consumer))
    finally:
        consumer.terminate()
        consumer.wait(timeout=60)
        asyncio.run(cleanup(settings))
    RESULTS.parent.mkdir(exist_ok=True)
    with RESULTS.open("a") as out:
        out.write(json.dumps(result) + "\n")
    for name, value in result.items():
        print(f"{name:>28}: {value}")


if __name__ == "__main__":
    main()
