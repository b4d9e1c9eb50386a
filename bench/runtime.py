"""Consumer runtime figures: throughput against raw aiokafka and Kafka's own tools, latency, idle RSS.

    .venv/bin/python bench/runtime.py [--events 200000] [--rate 1000] [--seconds 10] [--runs 5]

Prints a table and appends JSON lines to bench/results/runtime.jsonl. Method: ../shared/BENCH.md.
Groups get the CHIRP_CONSUMER_GROUP_PREFIX the consumer child gets, so the figures are read from its own groups.
1. Ceiling: Kafka's ConsumerPerformance / ProducerPerformance on the same box, same record size.
2. Raw Python client: a no-op aiokafka `getmany` loop over the same topic (same `max_records` as the runtime),
   and the same loop validating each record into its pydantic event model, as the runtime does.
3. The runtime: `chirp consume bench.noop_consumer` (decode, validate, no-op batch handler, commit) in a child
   process; events/s from its first commit to the last, as a ratio to (2).
4. Latency: open-loop publishing at `--rate` events/s; publish → handler (handler side) and publish → commit
   (the group's committed offset polled every 5 ms), from the scheduled send time.
5. RSS of an idle consumer process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench` as a package, run as a script

from bench import commit, pcts
from chirp.settings import Settings
from ops import _kafka
from producers.broker import ensure_topics
from schemas.events import PostCreated, PostCreatedData, new_id
from schemas.topics import Topic, dead_letters

RESULTS = Path(__file__).with_name("results") / "runtime.jsonl"
ROOT = Path(__file__).resolve().parents[1]
VALIDATOR = PostCreated.__pydantic_validator__
RUN = f"bench-rt-{new_id().lower()}-"  # every topic and group of this run starts so; deleted at its end


def event_bytes(body: str) -> bytes:
    event = PostCreated(payload=PostCreatedData(post_id=new_id(), author_id="bench", body=body))
    return event.model_dump_json().encode()


async def fill(settings: Settings, topic: str, n: int) -> int:
    """`n` distinct events (each its own id, as in the log: no decoding is saved by repeated bytes)."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=5, max_batch_size=262144)
    await producer.start()
    value = event_bytes("x" * 240)
    try:
        for i in range(0, n, 5000):
            batch = [
                producer.send(topic, event_bytes("x" * 240), key=str(j).encode()) for j in range(i, min(n, i + 5000))
            ]
            await asyncio.gather(*batch)
    finally:
        await producer.stop()
    return len(value)


async def raw_getmany(settings: Settings, topic: str, n: int, *, validate: bool = False) -> float:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.bootstrap_servers,
        group_id=f"{RUN}raw-{new_id()}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    seen, started = 0, 0.0
    try:
        while seen < n:
            batch = await consumer.getmany(timeout_ms=200, max_records=settings.consumer_batch_size)
            if batch and not started:
                started = time.perf_counter()
            for records in batch.values():
                seen += len(records)
                if validate:
                    for record in records:
                        VALIDATOR.validate_json(record.value)
            if batch:
                await consumer.commit()
    finally:
        await consumer.stop()
    return n / (time.perf_counter() - started)


def spawn(topic: str, group: str, latency_log: str = "") -> subprocess.Popen[bytes]:
    env = {**os.environ, "CHIRP_BENCH_TOPIC": topic, "CHIRP_BENCH_GROUP": group, "CHIRP_BENCH_LATENCY_LOG": latency_log}
    cmd = [sys.executable, "-m", "ops", "consume", "bench.noop_consumer", "--metrics-port", "0"]
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stderr=subprocess.DEVNULL)


async def committed_total(probe: AIOKafkaConsumer, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
    return {tp: (await probe.committed(tp)) or 0 for tp in tps}


async def runtime_rate(settings: Settings, topic: str, n: int) -> float:
    group = f"{RUN}rt-{new_id()}"
    probe = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=settings.group(group))
    await probe.start()
    tps = [TopicPartition(topic, p) for p in range(3)]
    proc = spawn(topic, group)
    try:
        first_at, first_count = 0.0, 0
        while True:
            total = sum((await committed_total(probe, tps)).values())
            now = time.perf_counter()
            if total and not first_at:
                first_at, first_count = now, total
            if total >= n:
                return (total - first_count) / (now - first_at)
            await asyncio.sleep(0.01)
    finally:
        proc.terminate()
        proc.wait()
        await probe.stop()


async def latency(settings: Settings, rate: int, seconds: int) -> dict[str, dict[str, float]]:
    topic = f"{RUN}lat"
    await ensure_topics(settings, (Topic(topic, key="post_id"),))
    group = f"{RUN}lat-{new_id()}"
    with tempfile.NamedTemporaryFile(delete=False, suffix=".lat") as tmp:
        log = Path(tmp.name)
    proc = spawn(topic, group, str(log))
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=0, acks="all")
    probe = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=settings.group(group))
    await producer.start()
    await probe.start()
    total = rate * seconds
    sent: dict[tuple[int, int], float] = {}  # (partition, offset) -> scheduled send time
    commit_lat: list[float] = []
    tps = [TopicPartition(topic, p) for p in range(3)]

    async def watch_commits() -> None:
        done = dict.fromkeys(range(3), 0)
        while len(commit_lat) < total:
            for tp, committed in (await committed_total(probe, tps)).items():
                now = time.time()
                while done[tp.partition] < committed and (tp.partition, done[tp.partition]) in sent:
                    commit_lat.append(now - sent[(tp.partition, done[tp.partition])])
                    done[tp.partition] += 1
            await asyncio.sleep(0.005)

    def record(scheduled: float) -> Callable[[asyncio.Future[Any]], None]:
        def done(fut: asyncio.Future[Any]) -> None:
            meta = fut.result()
            sent[(meta.partition, meta.offset)] = scheduled

        return done

    try:
        await asyncio.sleep(3)  # let the consumer join its group
        watcher = asyncio.create_task(watch_commits())
        start = time.time()
        for i in range(total):
            scheduled = start + i / rate
            delay = scheduled - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            fut = await producer.send(topic, event_bytes(repr(scheduled)), key=str(i).encode())
            fut.add_done_callback(record(scheduled))
        await asyncio.wait_for(watcher, timeout=30)
    finally:
        proc.terminate()
        proc.wait()
        await producer.stop()
        await probe.stop()
    handler_lat = [float(line) for line in log.read_text().split()]  # noqa: ASYNC240 (after the run)
    log.unlink()  # noqa: ASYNC240
    return {"handler": pcts(handler_lat), "commit": pcts(commit_lat)}


def kafka_tool(settings: Settings, cls: str, *args: str) -> str:
    libs = settings.home / "kafka" / settings.kafka_version / "libs"
    cmd = ["java", "-Xmx512m", "-cp", f"{libs}/*", cls, *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def consumer_perf(settings: Settings, topic: str, n: int) -> float:
    out = kafka_tool(
        settings, "org.apache.kafka.tools.ConsumerPerformance", "--bootstrap-server", settings.bootstrap_servers,
        "--topic", topic, "--messages", str(n), "--group", f"{RUN}perf-{new_id()}", "--hide-header",
    )  # fmt: skip
    return float(out.strip().splitlines()[-1].split(",")[5])  # nMsg.sec


def producer_perf(settings: Settings, n: int, size: int) -> float:
    topic = f"{RUN}pp"
    out = kafka_tool(
        settings, "org.apache.kafka.tools.ProducerPerformance", "--topic", topic, "--num-records", str(n),
        "--record-size", str(size), "--throughput", "-1", "--producer-props",
        f"bootstrap.servers={settings.bootstrap_servers}", "acks=all",
    )  # fmt: skip
    # last line: "N records sent, X records/sec (Y MB/sec), ..."
    return float(out.strip().splitlines()[-1].split(" records sent, ")[1].split(" records/sec")[0])


def idle_rss_mb() -> float:
    proc = spawn(f"{RUN}idle", f"{RUN}idle-{new_id()}")
    try:
        time.sleep(8)
        status = Path(f"/proc/{proc.pid}/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1]) / 1024
    finally:
        proc.terminate()
        proc.wait()


def summary(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values)), "min": round(min(values)), "max": round(max(values))}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    settings = Settings()
    try:
        await measure(settings, args)
    finally:
        await cleanup(settings)


async def cleanup(settings: Settings) -> None:
    """Delete this run's topics (its consumers' dead-letter topics too) and consumer groups."""
    ours = (RUN, dead_letters(RUN).name, settings.group(RUN))
    async with _kafka.admin(settings) as admin:
        await admin.delete_topics([n for n in await admin.list_topics() if n.startswith(ours)])
        for group in await _kafka.groups(admin):
            if group.startswith(ours):
                await _kafka.delete_group(admin, group)


async def measure(settings: Settings, args: argparse.Namespace) -> None:
    topic = f"{RUN}events"
    await ensure_topics(settings, (Topic(topic, key="post_id"),))
    size = await fill(settings, topic, args.events)
    ceiling, raw, raw_validated, runtime = [], [], [], []
    for _ in range(args.runs):
        ceiling.append(consumer_perf(settings, topic, args.events))
        raw.append(await raw_getmany(settings, topic, args.events))
        raw_validated.append(await raw_getmany(settings, topic, args.events, validate=True))
        runtime.append(await runtime_rate(settings, topic, args.events))
    produce = producer_perf(settings, args.events, size)
    lat = await latency(settings, args.rate, args.seconds)
    rss = idle_rss_mb()
    ratio = statistics.median(runtime) / statistics.median(raw)
    result = {
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": commit(),
        "loadavg_1m_at_end": os.getloadavg()[0],
        "events": args.events,
        "record_bytes": size,
        "kafka_consumer_perf_per_s": summary(ceiling),
        "kafka_producer_perf_per_s": round(produce),
        "raw_getmany_per_s": summary(raw),
        "raw_getmany_validating_per_s": summary(raw_validated),
        "runtime_noop_per_s": summary(runtime),
        # each run's runtime rate over the validating loop's of the same run (the box's load drifts between runs)
        "runtime_to_raw_validating_per_run": [round(r / v, 3) for r, v in zip(runtime, raw_validated, strict=True)],
        "runtime_to_raw_ratio": round(ratio, 3),
        "runtime_to_raw_validating_ratio": round(statistics.median(runtime) / statistics.median(raw_validated), 3),
        "runtime_to_kafka_ratio": round(statistics.median(runtime) / statistics.median(ceiling), 3),
        "latency_at_rate": {"rate_per_s": args.rate, "seconds": args.seconds, **lat},
        "idle_consumer_rss_mb": round(rss, 1),
    }
    print(f"{'figure':<34} value")
    for key, value in result.items():
        print(f"{key:<34} {value}")
    RESULTS.parent.mkdir(exist_ok=True)
    with RESULTS.open("a") as out:
        out.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
