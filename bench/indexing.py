"""Search indexing under a steady stream of posts: does the search consumer keep up, and with what headroom?

    .venv/bin/python bench/indexing.py [--rate 500] [--seconds 60] [--backlog 30000] [--runs 3]

Prints a table and appends JSON lines to bench/results/indexing.jsonl. Method: ../shared/BENCH.md.
- Consumer: the search consumer, remapped onto this run's topics (`bench-ix-<id>-<topic>`, as bench/rebuild.py
  does) under its own group, run by the production runtime (`build_app`: batches, commits, retries, dead letters)
  in a child process, writing the database `chirp_bench` (its indexes, RUM included, kept up row by row).
- Posts: post-parsed events of the seed generator (`chirp seed`'s Markdown, hashtags and mentions, rendered).
- Ceiling: capacity. `--backlog` posts are published before the consumer starts; the time from its start until its
  lag is 0 gives the posts/s it indexes flat out. Run before the streams.
- Stream: open loop, `rate / 10` posts every 100 ms for `--seconds` (a slow send never delays the next ones); every
  quarter second the lag (end offsets minus the group's committed offsets). Reported per run: lag p50 and max, seconds
  until the lag is 0 after the last post, CPU-ms per post of the consumer process. Kept up = the lag stays within
  two seconds of posts and drains within two seconds of the last one.
- Ratio: `--rate` over the capacity (the share of its indexing capacity the stream takes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import commit  # noqa: E402
from bench.rebuild import BENCH_DB, bench_topic, cleanup, prepare_stores, remapped  # noqa: E402
from chirp.logging import configure  # noqa: E402
from chirp.settings import Settings  # noqa: E402
from consumers.preparse import parsed, render_post  # noqa: E402
from consumers.runtime import build_app  # noqa: E402
from consumers.search import consumer as search  # noqa: E402
from ops import _kafka  # noqa: E402
from ops.seed import generate  # noqa: E402
from producers.broker import ensure_topics  # noqa: E402
from schemas import topics  # noqa: E402
from schemas.events import Event, PostCreated, new_id  # noqa: E402

RESULTS = Path(__file__).with_name("results") / "indexing.jsonl"
REDIS_DB = 9


def posts(n: int, seed: int) -> list[Event]:
    """`n` post-parsed events of the seed generator."""
    out: list[Event] = []
    for event in generate(max(100, n // 50), n, seed):
        if isinstance(event, PostCreated):
            out.append(parsed(event, render_post(event.payload.body)))
    return out


def child(prefix: str) -> None:
    """The remapped search consumer under the production runtime, until SIGTERM."""
    configure(process="bench-indexing", level="WARNING")
    asyncio.run(build_app(Settings(), [remapped(search, prefix)]).run())


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Stream:
    def __init__(self, settings: Settings, prefix: str) -> None:
        self.settings = settings
        self.topic = f"{prefix}{topics.POST_PARSED.name}"
        self.group = f"{prefix}{search.name}"
        self.producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=2)

    async def send(self, events: list[Event]) -> None:
        sends = [self.producer.send(self.topic, e.model_dump_json().encode(), key=e.key.encode()) for e in events]
        await asyncio.gather(*sends)

    async def lag(self, admin: Any, reader: Any) -> int:
        tps = await _kafka.partitions(reader, [self.topic])
        ends = await reader.end_offsets(tps)
        done = await _kafka.committed(admin, self.group)
        return sum(end - done.get(tp, 0) for tp, end in ends.items())

    async def drained(self, admin: Any, reader: Any, timeout: float = 600.0) -> float:
        """Seconds until the lag is 0."""
        started = time.perf_counter()
        while await self.lag(admin, reader) > 0:
            if time.perf_counter() - started > timeout:
                raise RuntimeError("the consumer did not drain its lag")
            await asyncio.sleep(0.05)
        return time.perf_counter() - started

    async def stream(self, admin: Any, reader: Any, events: list[Event], rate: int, pid: int) -> dict[str, Any]:
        """Open loop at `rate` posts/s; lag each second; drain time after the last post."""
        per_tick = max(1, rate // 10)
        ticks = [events[i : i + per_tick] for i in range(0, len(events), per_tick)]
        lags: list[int] = []
        cpu0 = cpu_s(pid)
        started = time.perf_counter()

        async def sample() -> None:
            while True:
                await asyncio.sleep(0.25)  # not in step with the 100 ms sends
                lags.append(await self.lag(admin, reader))

        sampler = asyncio.create_task(sample())
        sending = []
        for i, tick in enumerate(ticks):
            await asyncio.sleep(max(0.0, started + i * 0.1 - time.perf_counter()))
            sending.append(asyncio.create_task(self.send(tick)))
        await asyncio.gather(*sending)
        sampler.cancel()
        drain = await self.drained(admin, reader)
        return {
            "seconds": round(time.perf_counter() - started, 1),
            "lag_p50": statistics.median(lags) if lags else 0,
            "lag_max": max(lags, default=0),
            "drain_s": round(drain, 2),
            "consumer_cpu_ms_per_post": round((cpu_s(pid) - cpu0) * 1000 / len(events), 3),
        }


async def measure(settings: Settings, prefix: str, env: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    await ensure_topics(settings, tuple(bench_topic(prefix, t) for t in topics.ALL))
    s = Stream(settings, prefix)
    await s.producer.start()
    total = args.backlog + args.rate * args.seconds * args.runs
    events = posts(total, args.seed)
    backlog, rest = events[: args.backlog], events[args.backlog :]
    proc: asyncio.subprocess.Process | None = None
    try:
        for i in range(0, len(backlog), 5000):
            await s.send(backlog[i : i + 5000])
        async with _kafka.admin(settings) as admin, _kafka.reader(settings) as reader:
            proc = await asyncio.create_subprocess_exec(sys.executable, __file__, "--child", prefix, env=env)
            # Capacity: from the child's start (its import and connect included) to an empty backlog.
            started = time.perf_counter()
            await s.drained(admin, reader)
            capacity = len(backlog) / (time.perf_counter() - started)
            runs = []
            per_run = args.rate * args.seconds
            for r in range(args.runs):
                run = await s.stream(admin, reader, rest[r * per_run : (r + 1) * per_run], args.rate, proc.pid)
                print(f"run {r + 1}: {json.dumps(run)}", flush=True)
                runs.append(run)
    finally:
        if proc is not None:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 60)
        await s.producer.stop()
    return {"capacity_posts_per_s": capacity, "runs": runs}


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--backlog", type=int, default=30_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        return child(args.child)
    settings = Settings()
    prefix = f"bench-ix-{new_id().lower()}-"
    env = {**os.environ, "CHIRP_POSTGRES_DB": BENCH_DB, "CHIRP_METRICS_PORT": "0"}
    asyncio.run(prepare_stores(settings, REDIS_DB))
    try:
        found = asyncio.run(measure(settings, prefix, env, args))
    finally:
        asyncio.run(cleanup(settings, prefix, REDIS_DB))
    runs = found["runs"]
    kept_up = [r["lag_max"] <= 2 * args.rate and r["drain_s"] <= 2.0 for r in runs]
    result = {
        "bench": "indexing",
        "commit": commit(),
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "rate": args.rate,
        "seconds": args.seconds,
        "runs": args.runs,
        "capacity_posts_per_s": round(found["capacity_posts_per_s"]),
        "ratio": args.rate / found["capacity_posts_per_s"],
        **{k: spread([r[k] for r in runs]) for k in ("lag_p50", "lag_max", "drain_s", "consumer_cpu_ms_per_post")},
        "kept_up": all(kept_up),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    with RESULTS.open("a") as f:
        f.write(json.dumps(result) + "\n")
    print(f"\nsearch indexing at {args.rate} posts/s for {args.seconds} s ({args.runs} runs; medians [min-max])")
    for key in ("lag_p50", "lag_max", "drain_s", "consumer_cpu_ms_per_post"):
        v = result[key]
        print(f"  {key:26} {v['median']:>9,.2f} [{v['min']:,.2f}-{v['max']:,.2f}]")
    print(f"  capacity (backlog of {args.backlog:,}): {result['capacity_posts_per_s']:,} posts/s")
    print(f"  ratio stream / capacity: {result['ratio']:.3f}; kept up in every run: {result['kept_up']}")


if __name__ == "__main__":
    main()
