"""`chirp rebuild --all` throughput: events/s end to end, as a ratio to Kafka's ConsumerPerformance; peak RSS.

    .venv/bin/python bench/rebuild.py [--events 100000] [--runs 1] [--redis-db 9]   # ~3 min
    .venv/bin/python bench/rebuild.py --events 100000 --runs 3         # medians, ~6 min
    .venv/bin/python bench/rebuild.py --events 1000000                 # the full size
    .venv/bin/python bench/rebuild.py --clear                          # events in clear (no erasure keys)
    .venv/bin/python bench/rebuild.py --events 1000000 --keep          # ... keeping its topics, so that
    .venv/bin/python bench/rebuild.py --reuse bench-rb-<id>-           # later runs skip publishing them

Prints a table and appends JSON lines to bench/results/rebuild.jsonl. Method: ../shared/BENCH.md.

Isolation (the machine's Kafka, PostgreSQL and Redis are shared with everyone's tests): the seed data set
(ops.seed.generate: users, follows, posts, plus each post's post-parsed rendering; sealed as the gateway seals
them, with erasure keys in `chirp_bench`, unless `--clear`) goes to topics of this run
(`bench-rb-<id>-<topic>`), every consumer that owns a read model is rebuilt under a copy of itself subscribed to
those topics (group `bench-rb-<id>-<name>`), into the database `chirp_bench` (`<CHIRP_POSTGRES_TEST_DB>_bench`
when isolated) and Redis database `--redis-db` (default: `CHIRP_REDIS_DB`, else 9). The rebuild is
the real one (ops.replay.Replay: shadow build, swap, drain, hand-off), grouped and scheduled as
`chirp rebuild --all --jobs N` does (each model after the ones it reads, up to `--jobs` replays at once, default
one per core; consumers ready together that read the same topics share one replay), each replay in its own
process, so each peak RSS is its own process's.

1. Ceiling: ConsumerPerformance reading the same number of records the rebuild reads (the post-parsed topic
   repeatedly covers most of them), before and after the rebuilds.
2. Rebuild: events handled by every consumer / wall time of all of them (process start to exit); the same wall
   time per event of the log (each event counted once, however many models read it); and per consumer:
   events/s inside its replay, and its process's CPU-ms per event handled, peak RSS and wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import commit, redis_db  # noqa: E402
from chirp.settings import Settings  # noqa: E402
from consumers.preparse import parsed, render_post  # noqa: E402
from consumers.runtime import Consumer, all_consumers  # noqa: E402
from ops import _kafka  # noqa: E402
from ops.replay import Replay, in_dependency_order, read_model_of, rebuild_order  # noqa: E402
from ops.seed import generate  # noqa: E402
from producers.broker import ensure_topics  # noqa: E402
from producers.sealing import seal  # noqa: E402
from schemas import topics  # noqa: E402
from schemas.events import Event, PostCreated, new_id  # noqa: E402
from store.keys import PgKeyStore  # noqa: E402
from store.postgres import connect  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "rebuild.jsonl"
BENCH_DB = os.environ.get("CHIRP_POSTGRES_TEST_DB", "chirp") + "_bench"  # chirp_bench unless isolated


def bench_topic(prefix: str, topic: topics.Topic) -> topics.Topic:
    return topics.Topic(f"{prefix}{topic.name}", key=topic.key, partitions=topic.partitions)


def remapped(consumer: Consumer, prefix: str) -> Consumer:
    """A copy of `consumer` reading this run's topics under its own group name."""
    copy = replace(consumer, name=f"{prefix}{consumer.name}", handlers={})
    for handler in consumer.handlers.values():
        topic = bench_topic(prefix, handler.topic)
        copy.handlers[topic.name] = replace(handler, topic=topic)
    return copy


def data_set(events: int, seed: int) -> list[Event]:
    """About `events` records: the seed generator's users, follows and posts, plus a post-parsed per post."""
    users = max(100, events // 100)
    head = list(generate(users, 0, seed))
    posts = max(0, (events - len(head)) // 2)
    out: list[Event] = []
    for event in generate(users, posts, seed):
        out.append(event)
        if isinstance(event, PostCreated):
            out.append(parsed(event, render_post(event.payload.body)))
    return out


async def publish(settings: Settings, prefix: str, events: list[Event], *, sealed: bool) -> dict[str, int]:
    """Publish the data set, sealed as the gateway seals it (keys in the benchmark's database) or in clear."""
    await ensure_topics(settings, tuple(bench_topic(prefix, t) for t in topics.ALL))
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=5, max_batch_size=262144)
    await producer.start()
    pool = await connect(settings.model_copy(update={"postgres_db": BENCH_DB})) if sealed else None
    keys = PgKeyStore(pool) if pool is not None else None
    counts: dict[str, int] = {}
    try:
        for i in range(0, len(events), 5000):
            chunk = events[i : i + 5000]
            values = await asyncio.gather(*(seal(event, keys) for event in chunk))
            sends = []
            for event, (value, headers) in zip(chunk, values, strict=True):
                name = f"{prefix}{event.topic.name}"
                counts[name] = counts.get(name, 0) + 1
                wire = [(k, v.encode()) for k, v in headers.items()]
                sends.append(producer.send(name, value, key=event.key.encode(), headers=wire))
            await asyncio.gather(*sends)
    finally:
        await producer.stop()
        if pool is not None:
            await pool.close()
    return counts


async def topic_counts(settings: Settings, prefix: str) -> dict[str, int]:
    """Records in each of a kept run's topics (they were written once, from offset 0)."""
    async with _kafka.reader(settings) as kafka:
        tps = await _kafka.partitions(kafka, [f"{prefix}{t.name}" for t in topics.ALL])
        ends = await kafka.end_offsets(tps)
    counts: dict[str, int] = {}
    for tp, end in ends.items():
        if end:
            counts[tp.topic] = counts.get(tp.topic, 0) + end
    if not counts:
        raise SystemExit(f"no topics under {prefix}: publish them with --keep first")
    return counts


def consumer_perf(settings: Settings, topic: str, n: int) -> float:
    libs = settings.home / "kafka" / settings.kafka_version / "libs" / "*"
    cmd = [
        "java", "-cp", str(libs), "org.apache.kafka.tools.ConsumerPerformance", "--bootstrap-server",
        settings.bootstrap_servers, "--topic", topic, "--messages", str(n), "--group", f"{topic}.perf-{new_id()}",
        "--hide-header",
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1].split(",")[5])  # nMsg.sec


def run_child(prefix: str, names: list[str], env: dict[str, str]) -> list[dict[str, Any]]:
    """One replay (of one consumer or several together) in its own process: each consumer's result, and the
    process's wall time, CPU time and peak RSS."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", ",".join(names), "--prefix", prefix], env=env, stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"rebuild of {names} failed ({proc.returncode})")
    results = json.loads(out.decode().strip().splitlines()[-1])
    for result in results:
        result.update(
            process="+".join(names),
            wall_s=time.perf_counter() - started,
            cpu_s=usage.ru_utime + usage.ru_stime,
            process_events=sum(r["processed"] for r in results),
        )
    return results


async def rebuild_in_children(
    prefix: str, env: dict[str, str], jobs: int, counts: dict[str, int]
) -> list[dict[str, Any]]:
    """Every consumer's rebuild in child processes, grouped and scheduled as `chirp rebuild --all --jobs` does
    (this run's topic counts are the events the scheduler weighs)."""

    async def run(group: list[Consumer]) -> list[dict[str, Any]]:
        return await asyncio.to_thread(run_child, prefix, [c.name for c in group], env)

    events = {topic.removeprefix(prefix): n for topic, n in counts.items()}
    return await in_dependency_order(all_consumers(), run, jobs, events)


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


async def child(names: str, prefix: str) -> None:
    settings = Settings()
    originals = [next(c for c in all_consumers() if c.name == name) for name in names.split(",")]
    job = Replay(settings, [remapped(c, prefix) for c in originals], [read_model_of(c) for c in originals])
    results = await job.run()
    peak = _status_kb("VmHWM") / 1024  # this process's own peak (wait4's ru_maxrss also counts the forked parent)
    print(
        json.dumps(
            [
                {"consumer": c.name, "processed": r.processed, "seconds": r.seconds, "peak_rss_mb": peak}
                for c, r in zip(originals, results, strict=True)
            ]
        )
    )
    os._exit(0)  # background tasks a consumer's setup started (trending's refresher) end with the process


async def prepare_stores(settings: Settings, redis_db: int) -> None:
    conn = await asyncpg.connect(settings.postgres_dsn())
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", BENCH_DB):
            await conn.execute(f"CREATE DATABASE {BENCH_DB}")
    finally:
        await conn.close()
    pool = await connect(settings.model_copy(update={"postgres_db": BENCH_DB}))
    await pool.close()
    client = aioredis.Redis(host=settings.redis_host, port=settings.redis_port, db=redis_db)
    await client.flushdb()  # this database is the benchmark's own
    await client.aclose()


async def cleanup(settings: Settings, prefix: str, redis_db: int) -> None:
    """Delete a run's topics (the replays' dead-letter topics too), groups and Redis database."""
    ours = (prefix, topics.dead_letters(prefix).name)
    async with _kafka.admin(settings) as admin:
        names = [n for n in await admin.list_topics() if n.startswith(ours)]
        await admin.delete_topics(names)
        for group in await _kafka.groups(admin):
            if group.startswith(prefix):
                await _kafka.delete_group(admin, group)
    client = aioredis.Redis(host=settings.redis_host, port=settings.redis_port, db=redis_db)
    await client.flushdb()
    await client.aclose()


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=1, help="3 for the medians BENCH.md asks of runs over 60 s")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--redis-db", type=int, default=redis_db(9))
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="replays at once (as rebuild --jobs)")
    parser.add_argument("--keep", action="store_true", help="keep this run's topics (their prefix is printed)")
    parser.add_argument("--reuse", metavar="PREFIX", help="read the topics a --keep run left instead of publishing")
    parser.add_argument("--clear", action="store_true", help="publish in clear (no erasure keys) to compare")
    parser.add_argument("--child")
    parser.add_argument("--prefix")
    args = parser.parse_args()
    if args.child:
        return asyncio.run(child(args.child, args.prefix))

    settings = Settings()
    prefix = args.reuse or f"bench-rb-{new_id().lower()}-"
    env = {**os.environ, "CHIRP_POSTGRES_DB": BENCH_DB, "CHIRP_REDIS_DB": str(args.redis_db)}
    order = [c.name for c in rebuild_order(all_consumers())]
    asyncio.run(prepare_stores(settings, args.redis_db))
    if args.reuse:
        counts = asyncio.run(topic_counts(settings, prefix))
    else:
        started = time.perf_counter()
        events = data_set(args.events, args.seed)
        counts = asyncio.run(publish(settings, prefix, events, sealed=not args.clear))
        print(
            f"{len(events):,} events published in {time.perf_counter() - started:.0f}s to {len(counts)} topics",
            flush=True,
        )
    parsed_topic = f"{prefix}{topics.POST_PARSED.name}"
    try:
        ceiling, rebuilds = [], []
        for run in range(args.runs):
            ceiling.append(consumer_perf(settings, parsed_topic, counts[parsed_topic]))
            wall = time.perf_counter()
            per = asyncio.run(rebuild_in_children(prefix, env, args.jobs, counts))
            rebuilds.append({"wall_s": time.perf_counter() - wall, "consumers": per})
            total = sum(r["processed"] for r in per)
            print(f"run {run + 1}: {total:,} events in {rebuilds[-1]['wall_s']:.1f}s", flush=True)
        ceiling.append(consumer_perf(settings, parsed_topic, counts[parsed_topic]))
    finally:
        if args.keep or args.reuse:
            print(f"topics kept: --reuse {prefix}")
        else:
            asyncio.run(cleanup(settings, prefix, args.redis_db))
    report(args, counts, order, ceiling, rebuilds)


def report(
    args: argparse.Namespace, counts: dict[str, int], order: list[str], ceiling: list[float], rebuilds: list
) -> None:
    rates = [sum(c["processed"] for c in r["consumers"]) / r["wall_s"] for r in rebuilds]
    kafka = statistics.median(ceiling)
    rows = []
    for name in order:
        mine = [next(c for c in r["consumers"] if c["consumer"] == name) for r in rebuilds]
        rows.append(
            {
                "consumer": name,
                "events": mine[0]["processed"],
                "events_per_s": spread([c["processed"] / c["seconds"] for c in mine]),
                "process": mine[0]["process"],
                "cpu_ms_per_event": spread([1000 * c["cpu_s"] / max(c["process_events"], 1) for c in mine]),
                "peak_rss_mb": spread([c["peak_rss_mb"] for c in mine]),
                "wall_s": spread([c["wall_s"] for c in mine]),
            }
        )
    total = sum(counts.values())
    print(f"\nrebuild --all --jobs {args.jobs} over {total:,} events ({args.runs} runs; medians [min-max])")
    print(f"{'':<11}{'events':>10}{'events/s':>22}{'CPU-ms/ev':>12}{'peak RSS MB':>13}{'wall s':>9}  process")
    for row in rows:
        e = row["events_per_s"]
        print(
            f"{row['consumer']:<11}{row['events']:>10,}{e['median']:>10,.0f} [{e['min']:,.0f}-{e['max']:,.0f}]"
            f"{row['cpu_ms_per_event']['median']:>12.3f}{row['peak_rss_mb']['median']:>13.0f}{row['wall_s']['median']:>9.1f}"
            f"  {row['process']}"
        )
    r = spread(rates)
    walls = spread([run["wall_s"] for run in rebuilds])
    log_rate = spread([total / run["wall_s"] for run in rebuilds])
    print(f"end to end: {r['median']:,.0f} events/s [{r['min']:,.0f}-{r['max']:,.0f}] (events each consumer handled)")
    print(
        f"wall: {walls['median']:.1f} s [{walls['min']:.1f}-{walls['max']:.1f}], i.e. {log_rate['median']:,.0f} of the"
        f" log's {total:,} events per second [{log_rate['min']:,.0f}-{log_rate['max']:,.0f}]"
    )
    print(f"ConsumerPerformance: {kafka:,.0f} msg/s [{min(ceiling):,.0f}-{max(ceiling):,.0f}]")
    print(f"ratio rebuild / Kafka consumer ceiling: {r['median'] / kafka:.3f}")
    print(f"commit: {commit()}")
    RESULTS.parent.mkdir(exist_ok=True)
    with RESULTS.open("a") as out:
        line = {
            "bench": "rebuild",
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "commit": commit(),
            "events": sum(counts.values()),
            "sealed": not args.clear,
            "runs": args.runs,
            "jobs": args.jobs,
            "end_to_end_events_per_s": r,
            "wall_s": walls,
            "log_events_per_s": log_rate,
            "consumer_performance_msgs_per_s": spread(ceiling),
            "ratio": r["median"] / kafka,
            "consumers": rows,
        }
        out.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
