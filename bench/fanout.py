"""Timeline fan-out: how long until a post is in every follower's timeline, for authors with 1,000 and 4,999 followers.

    .venv/bin/python bench/fanout.py [--rate 4] [--seconds 20] [--runs 3] [--seed 7]

Prints a table and appends JSON lines to bench/results/fanout.jsonl. Method: ../shared/BENCH.md.
- Stores: the Redis database `CHIRP_REDIS_DB` names, and the PostgreSQL database `CHIRP_POSTGRES_TEST_DB` names when
  set (a developer's own, created when missing), else the app's; the topic is under `CHIRP_TOPIC_NAMESPACE`.
- Data (deterministic, idempotent, in that database): two authors followed by 1,000 and 4,999 accounts, each
  follower with a (built, empty) timeline in Redis, as users who read theirs: fan-out writes only into those.
- The timelines consumer's own post-parsed handler runs in `chirp consume bench.fanout` (a child process) on a
  topic and group of its own, so nothing else consumes these events and it reads no history.
- Open loop: post-parsed events at `--rate` per second, alternating authors; each event carries its scheduled send
  time, and the handler logs when it returned, i.e. when every follower's timeline had the post (the handler
  returns after its last Redis pipeline). Latency = returned - scheduled, so no coordinated omission.
- Ceiling, in the same run: the same writes (one script call per follower timeline) pipelined straight from this
  process, without Kafka, PostgreSQL or the consumer runtime.
- CPU-ms per post of the consumer process and of Redis; every follower timeline is checked for the last posts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench` as a package, run as a script

from bench import ensure_database, pcts, record
from chirp.settings import Settings
from consumers import timelines
from consumers.runtime import Consumer, Context
from producers.broker import Publisher, ensure_topics, make_broker
from schemas.events import PostParsed, PostParsedData, new_id
from schemas.topics import NAMESPACE, Topic
from store.postgres import connect
from store.timelines import RedisTimelines, member, timeline_key

RESULTS = Path(__file__).with_name("results") / "fanout.jsonl"
ROOT = Path(__file__).resolve().parents[1]
SIZES = (1_000, 4_999)

# The consumer side, when run as `chirp consume bench.fanout` ---------------------------------------------------

TOPIC = Topic(os.environ.get("CHIRP_BENCH_TOPIC", "bench-fanout"), key="post_id")
consumer = Consumer(os.environ.get("CHIRP_BENCH_GROUP", "bench-fanout"), "Timeline fan-out benchmark")
LATENCY_LOG = os.environ.get("CHIRP_BENCH_LATENCY_LOG", "")


@consumer.on(TOPIC, batch=True, model=PostParsed)
async def on_post_parsed(events: list[PostParsed], ctx: Context) -> None:
    await timelines.on_post_parsed(events, ctx)
    done = time.time()
    with open(LATENCY_LOG, "a") as out:  # noqa: ASYNC230 (a benchmark's local file, microseconds)
        out.writelines(f"{e.payload.author_id} {done - float(e.payload.body):.6f}\n" for e in events)


# The driver -------------------------------------------------------------------------------------------------


def author_id(seed: int, size: int) -> str:
    return f"bench-fo{seed}-a{size}"


def follower_ids(seed: int, size: int) -> list[str]:
    return [f"bench-fo{seed}-a{size}-f{i:04d}" for i in range(size)]


async def seed_data(settings: Settings, seed: int) -> None:
    """Authors and their followers (users and follows rows), once."""
    now = datetime.now(UTC)
    pg = await connect(settings)
    try:
        async with pg.acquire() as conn, conn.transaction():
            for size in SIZES:
                author, followers = author_id(seed, size), follower_ids(seed, size)
                await conn.executemany(
                    """INSERT INTO users (user_id, handle, joined_at, profile_at, registered_at)
                       VALUES ($1, $1, $2, $2, $2) ON CONFLICT DO NOTHING""",
                    [(u, now) for u in [author, *followers]],
                )
                await conn.executemany(
                    "INSERT INTO follows VALUES ($1, $2, true, $3) ON CONFLICT DO NOTHING",
                    [(f, author, now) for f in followers],
                )
                await conn.execute("UPDATE users SET followers_count = $2 WHERE user_id = $1", author, len(followers))
    finally:
        await pg.close()


async def warm(settings: Settings, seed: int) -> None:
    """Give every follower a built timeline, as a read would (missing ones are not fanned out to)."""
    redis = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        store = RedisTimelines(redis, settings.timeline_length)
        for size in SIZES:
            for follower in follower_ids(seed, size):
                await store.build(follower, [], [])
    finally:
        await redis.aclose()


def spawn(topic: str, group: str, log: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CHIRP_BENCH_TOPIC": topic, "CHIRP_BENCH_GROUP": group, "CHIRP_BENCH_LATENCY_LOG": log}
    cmd = [sys.executable, "-m", "ops", "consume", "bench.fanout", "--metrics-port", "0"]
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stderr=subprocess.DEVNULL)


def ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def redis_pid() -> int:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "redis-server":
                    return int(entry.name)
            except OSError:
                continue
    raise RuntimeError("no redis-server process")


async def publish_open_loop(publisher: Publisher, topic: str, seed: int, rate: float, seconds: float) -> list[str]:
    """Post-parsed events at a fixed rate, alternating authors; returns the members written last per author."""
    total = int(rate * seconds)
    start = time.time() + 0.2
    last: dict[int, str] = {}
    for i in range(total):
        size = SIZES[i % len(SIZES)]
        scheduled = start + i / rate
        if (delay := scheduled - time.time()) > 0:
            await asyncio.sleep(delay)
        post_id = new_id()
        event = PostParsed(
            payload=PostParsedData(
                post_id=post_id,
                author_id=author_id(seed, size),
                body=repr(scheduled),
                html="<p>bench</p>",
                text="bench",
                created_at=datetime.now(UTC),
            )
        )
        await publisher.publish_raw(topic, post_id.encode(), event.model_dump_json().encode(), {})
        last[size] = member(post_id, author_id(seed, size))
    return [last[size] for size in SIZES]


async def ceiling(redis: aioredis.Redis, seed: int, length: int, repeat: int = 5) -> dict[int, float]:
    """Seconds to write one post into every follower's timeline straight from here (same script, same pipelines)."""
    store = RedisTimelines(redis, length)
    found = {}
    for size in SIZES:
        times = []
        for _ in range(repeat):
            writes = {f: [member(new_id(), author_id(seed, size))] for f in follower_ids(seed, size)}
            started = time.perf_counter()
            await store.add(writes, create=False)
            times.append(time.perf_counter() - started)
        found[size] = statistics.median(times)
    return found


async def missing(redis: aioredis.Redis, seed: int, values: list[str]) -> int:
    """How many follower timelines lack the last post of their author."""
    count = 0
    for size, value in zip(SIZES, values, strict=True):
        async with redis.pipeline(transaction=False) as pipe:
            for follower in follower_ids(seed, size):
                pipe.zscore(timeline_key(follower), value)
            count += sum(score is None for score in await pipe.execute())
    return count


async def run_once(settings: Settings, publisher: Publisher, args: argparse.Namespace) -> dict[str, object]:
    topic = f"{NAMESPACE}bench-fanout-{new_id().lower()}"
    await ensure_topics(settings, (Topic(topic, key="post_id"),))
    with tempfile.NamedTemporaryFile(suffix=".lat", delete=False) as tmp:
        log = Path(tmp.name)
    proc = spawn(topic, f"bench-fanout-{new_id()}", str(log))
    redis = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    rpid = redis_pid()
    try:
        await asyncio.sleep(6)  # the consumer joins its group
        before = (ticks(proc.pid), ticks(rpid))
        last = await publish_open_loop(publisher, topic, args.seed, args.rate, args.seconds)
        total = int(args.rate * args.seconds)
        deadline = time.monotonic() + 60
        # Polls a file another process appends to: nothing here could set an event.
        while len(log.read_text().splitlines()) < total and time.monotonic() < deadline:  # noqa: ASYNC110, ASYNC240
            await asyncio.sleep(0.1)
        after = (ticks(proc.pid), ticks(rpid))
        lack = await missing(redis, args.seed, last)
        bare = await ceiling(redis, args.seed, settings.timeline_length)
    finally:
        proc.terminate()
        proc.wait()
        await redis.aclose()
    lines = [line.split() for line in log.read_text().splitlines()]  # noqa: ASYNC240 (after the run)
    log.unlink()  # noqa: ASYNC240
    tick = os.sysconf("SC_CLK_TCK")
    return {
        "latency": {size: pcts([float(s) for a, s in lines if a == author_id(args.seed, size)], 1) for size in SIZES},
        "ceiling_ms": {size: round(s * 1000, 1) for size, s in bare.items()},
        "posts": len(lines),
        "timelines_missing_last_post": lack,
        "cpu_ms_per_post": {
            "consumer": round((after[0] - before[0]) * 1000 / tick / max(1, len(lines)), 2),
            "redis": round((after[1] - before[1]) * 1000 / tick / max(1, len(lines)), 2),
        },
    }


async def cleanup(settings: Settings, seed: int) -> None:
    """Drop the follower timelines the runs filled (the SQL rows stay for the next run)."""
    redis = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        for size in SIZES:
            keys = [timeline_key(u) for u in [author_id(seed, size), *follower_ids(seed, size)]]
            for i in range(0, len(keys), 1000):
                await redis.delete(*keys[i : i + 1000])
    finally:
        await redis.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=4.0, help="posts per second, alternating the two authors")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if "CHIRP_POSTGRES_TEST_DB" in os.environ:  # the consumer process reads the same environment
        os.environ["CHIRP_POSTGRES_DB"] = os.environ["CHIRP_POSTGRES_TEST_DB"]
    settings = Settings()
    await ensure_database(settings)
    await seed_data(settings, args.seed)
    await warm(settings, args.seed)
    broker = make_broker(settings)
    await broker.connect()
    publisher = Publisher(broker)
    runs = []
    try:
        for _ in range(args.runs):
            runs.append(await run_once(settings, publisher, args))
    finally:
        await broker.stop()
        await cleanup(settings, args.seed)
    result: dict[str, object] = {
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "rate_per_s": args.rate,
        "seconds": args.seconds,
        "runs": args.runs,
    }
    for size in SIZES:
        p99s = [r["latency"][size]["p99_ms"] for r in runs]  # type: ignore[index]
        p50s = [r["latency"][size]["p50_ms"] for r in runs]  # type: ignore[index]
        bare = [r["ceiling_ms"][size] for r in runs]  # type: ignore[index]
        result[f"followers_{size}"] = {
            "p50_ms": statistics.median(p50s),
            "p99_ms": {"median": statistics.median(p99s), "min": min(p99s), "max": max(p99s)},
            "ceiling_ms": statistics.median(bare),
            "p50_to_ceiling_ratio": round(statistics.median(p50s) / statistics.median(bare), 2),
        }
    result["timelines_missing_last_post"] = sum(r["timelines_missing_last_post"] for r in runs)  # type: ignore[misc]
    result["cpu_ms_per_post"] = runs[len(runs) // 2]["cpu_ms_per_post"]
    record(RESULTS, result)


if __name__ == "__main__":
    asyncio.run(main())
