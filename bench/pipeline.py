"""Posts end to end: POST /api/posts → 202 → visible at GET /api/posts/{id}, open loop, CPU per process.

    .venv/bin/python bench/pipeline.py [--rate 200] [--seconds 20] [--runs 5] [--users 8] [--find-max]
                                       [--app-groups] [--no-ceiling] [--clear] [--direct]

Prints a table and appends JSON lines to bench/results/pipeline.jsonl. Method: ../shared/BENCH.md.
- Processes: the gateway (`chirp gateway`: uvicorn, one worker, CHIRP_ENV=dev for the dev login) and every consumer
  (`python -m bench.pipeline_consumers`: `chirp consume --all` under `bench-` group ids, fast-forwarded to the end
  of the topics first; `--app-groups` runs `chirp consume --all` itself) as children, unpinned.
- Isolation: the benchmark's own topics (`<CHIRP_TOPIC_NAMESPACE>bench-post-created`, ...), groups
  (`<CHIRP_CONSUMER_GROUP_PREFIX>bench-<consumer>`), database `<CHIRP_POSTGRES_TEST_DB or chirp>_bench`, Redis
  database `CHIRP_REDIS_DB` (10 when unset; emptied first) and a free port, so its users and posts never enter the
  app's log (the source of truth) or its read models, nor another developer's benchmark run at the same time.
- `--direct`: the driver publishes post-created itself (sealed, as the gateway would) and a post is visible when its
  notice arrives: the consumers' share without the gateway's load on the box.
- `--clear`: the gateway and consumers publish in clear (`CHIRP_ERASURE_SEAL=false`), the before of sealing.
- Load: `--users` dev-login users post 200-280 character posts (0-3 hashtags from a Zipf set, a link in 30%,
  seeded) at `--rate` per second, open loop: every request starts at its scheduled time whatever happened to the
  others, and every latency counts from that scheduled time (no coordinated omission).
- accepted: scheduled → 202 (Kafka acknowledged post-created). visible: scheduled → GET /api/posts/{id} answers
  200. The driver subscribes to the posts channel and sends that GET when the id's notice arrives (one GET per post,
  no blind polling; a 404 then polls every 20 ms), so the gateway's CPU per post covers one POST and one GET.
- count in = count out: accepted ids vs live rows with those ids in `posts`.
- CPU-ms per post per process over each run (utime+stime from /proc/PID/stat; PostgreSQL with its backends):
  gateway, consumers, this driver, and Kafka, Redis, PostgreSQL (shared with whatever else runs on the box).
- Ceiling: Kafka's ProducerPerformance at the post-created record size (acks=all), before and after the runs.
- `--find-max` steps the rate up (10 s steps) while visible p99 stays under 1 s and every post is visible within
  2 s after the step; the highest such rate is reported as a ratio to the ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

# Before anything imports schemas.topics (topic and channel names are read once, at import).
os.environ["CHIRP_TOPIC_NAMESPACE"] = os.environ.get("CHIRP_TOPIC_NAMESPACE", "") + "bench-"
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import random
import socket
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from bench import commit
from bench.rebuild import BENCH_DB, prepare_stores
from chirp.settings import Settings
from ops.services import kafka as kafka_service
from ops.services import redis as redis_service
from producers.broker import Publisher, ensure_topics, make_broker
from schemas.events import PostCreated, PostCreatedData, new_id
from schemas.personal import user_key
from schemas.topics import BY_NAME, POST_CREATED, POST_DELETED, POST_PARSED
from store.keys import PgKeyStore
from store.posts import CHANNEL

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "pipeline.jsonl"
REDIS_DB = int(os.environ.get("CHIRP_REDIS_DB", "10"))
VISIBLE_TIMEOUT_S = 30.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
WORDS = ["the", "a", "river", "light", "code", "open", "small", "event", "kafka", "post", "stream", "quiet", "build"]


# Synthetic posts ----------------------------------------------------------------------------------------------


def make_bodies(n: int, seed: int) -> list[str]:
    """`n` deterministic posts of 200-280 characters: 0-3 Zipf-distributed hashtags, a link in 30%."""
    rng = random.Random(seed)
    tags = [f"tag{i}" for i in range(1, 201)]
    weights = [1 / rank for rank in range(1, len(tags) + 1)]
    bodies = []
    for _ in range(n):
        target = rng.randint(200, 280)
        extra = [f"#{t}" for t in rng.choices(tags, weights, k=rng.randint(0, 3))]
        if rng.random() < 0.3:
            extra.append(f"https://example.org/{rng.randrange(10**6)}")
        words: list[str] = []
        while len(" ".join(words + extra)) < target:
            words.append(rng.choice(WORDS))
        rng.shuffle(extra)
        bodies.append(" ".join(words + extra)[:280].strip())
    return bodies


# Processes ----------------------------------------------------------------------------------------------------


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int(_stat(int(entry.name))[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError):
                continue  # exited meanwhile
    return found


def cpu_ticks(pid: int, tree: bool = False) -> int:
    """utime+stime of a process; with `tree`, plus its reaped (cutime) and live children's."""
    fields = _stat(pid)
    total = int(fields[11]) + int(fields[12])
    if tree:
        total += int(fields[13]) + int(fields[14])
        for child in _children(pid):
            try:
                child_fields = _stat(child)
            except OSError:
                continue
            total += int(child_fields[11]) + int(child_fields[12])
    return total


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith(key)).split()[1]) / 1024


def postmaster_pid(settings: Settings) -> int | None:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "/bin/postgres" in cmd and "-D" in cmd and "chirp" in cmd:
                return int(entry.name)
    return None


@dataclass
class Watched:
    """The processes whose CPU a run measures: name → (pid, whole tree?)."""

    pids: dict[str, tuple[int, bool]]

    def ticks(self) -> dict[str, int]:
        return {name: cpu_ticks(pid, tree) for name, (pid, tree) in self.pids.items()}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


PORT = free_port()


def spawn(cmd: list[str], settings: Settings, log: Path | None) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CHIRP_ENV": "dev",
        "CHIRP_POSTGRES_DB": settings.postgres_db,
        "CHIRP_REDIS_DB": str(settings.redis_db),
        "CHIRP_PORT": str(PORT),
        "CHIRP_PUBLIC_URL": f"http://{settings.host}:{PORT}",
    }
    out = log.open("ab") if log else subprocess.DEVNULL
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=out)


async def fast_forward(settings: Settings, only: str) -> None:
    """Commit the end offsets of their topics for the bench groups, so a run does not replay the history."""
    from bench.pipeline_consumers import bench_consumers

    for consumer in bench_consumers(only):
        probe = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=settings.group(consumer.name))
        await probe.start()
        try:
            tps = [TopicPartition(t, p) for t in consumer.handlers for p in range(BY_NAME[t].partitions)]
            probe.assign(tps)
            ends = await probe.end_offsets(tps)
            await probe.commit({tp: OffsetAndMetadata(offset, "") for tp, offset in ends.items()})
        finally:
            await probe.stop()


# Load ---------------------------------------------------------------------------------------------------------


class MiniHTTP:
    """A bare HTTP/1.1 keep-alive client over asyncio streams.

    httpx costs the driver ~5 ms of CPU per request, which on this 2-core box made the driver the bottleneck and
    its own lateness the measured latency; this costs ~0.1 ms. It speaks just what the gateway answers:
    Content-Length bodies, keep-alive.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.opened: list[asyncio.StreamWriter] = []

    async def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                      json_body: Any = None) -> tuple[int, bytes]:  # fmt: skip
        body = orjson.dumps(json_body) if json_body is not None else b""
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Length: {len(body)}\r\n"
        if body:
            head += "Content-Type: application/json\r\n"
        for name, value in (headers or {}).items():
            head += f"{name}: {value}\r\n"
        request = head.encode() + b"\r\n" + body
        while self.idle:  # uvicorn closes keep-alive connections idle for 5 s: skip those
            reader, writer = self.idle.pop()
            try:
                return await self._exchange(reader, writer, request)
            except (ConnectionError, IndexError, asyncio.IncompleteReadError):
                writer.close()
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port)
            self.opened.append(writer)
            return await self._exchange(reader, writer, request)
        except (ConnectionError, IndexError, asyncio.IncompleteReadError):
            return 0, b""  # an overloaded server dropped it: counted as an error (status 0), never fatal

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        request: bytes) -> tuple[int, bytes]:  # fmt: skip
        writer.write(request)
        status = int((await reader.readline()).split()[1])
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        data = await reader.readexactly(length)
        self.idle.append((reader, writer))
        return status, data

    async def close(self) -> None:
        for writer in self.opened:
            writer.close()


class Notices:
    """Arrival times of the posts channel's notices, and futures for ids someone waits for."""

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}
        self.waiting: dict[str, asyncio.Future[float]] = {}

    async def listen(self, client: aioredis.Redis) -> None:
        pubsub = client.pubsub()
        await pubsub.subscribe(CHANNEL)
        try:
            async for message in pubsub.listen():
                if message["type"] == "message":
                    post_id = orjson.loads(message["data"])["id"]
                    future = self.waiting.pop(post_id, None)
                    if future and not future.done():
                        future.set_result(time.monotonic())
                    else:
                        self.seen[post_id] = time.monotonic()
        finally:
            await pubsub.aclose()

    async def wait(self, post_id: str, timeout: float) -> float | None:
        """When the id's notice arrived (monotonic), or None when it did not within `timeout`."""
        if post_id in self.seen:
            return self.seen.pop(post_id)
        future = self.waiting[post_id] = asyncio.get_running_loop().create_future()
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            self.waiting.pop(post_id, None)
            return None


@dataclass
class Run:
    rate: int
    seconds: float
    accepted: list[float] = field(default_factory=list)
    visible: list[float] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    errors: int = 0
    error_statuses: dict[int, int] = field(default_factory=dict)
    invisible: int = 0
    timeline: list[tuple[float, float]] = field(default_factory=list)  # (scheduled, accepted latency)
    last_visible_at: float = 0.0
    # post id -> wall-clock seconds (scheduled, accepted, notice arrived, visible): hops() adds Kafka's record times
    marks: dict[str, list[float]] = field(default_factory=dict)


async def one_post(http: MiniHTTP | Publisher, headers: dict[str, str], body: str, scheduled: float,
                   notices: Notices, run: Run) -> None:  # fmt: skip
    if isinstance(http, Publisher):  # --direct: published as the gateway would, visible when its notice arrives
        post_id = new_id()
        author = direct_author(headers)
        await http.publish(PostCreated(actor=author, payload=PostCreatedData(post_id=post_id, author_id=author,
                                                                             body=body)))  # fmt: skip
    else:
        status, data = await http.request("POST", "/api/posts", headers, {"body": body})
        if status != 202:
            run.errors += 1
            run.error_statuses[status] = run.error_statuses.get(status, 0) + 1
            return
        post_id = orjson.loads(data)["id"]
    accepted = time.monotonic()
    run.accepted.append(accepted - scheduled)
    run.timeline.append((scheduled, accepted - scheduled))
    run.ids.append(post_id)
    wall = time.time() - time.monotonic()  # monotonic -> wall clock, to line up with Kafka's record times
    noticed = await notices.wait(post_id, VISIBLE_TIMEOUT_S) or time.monotonic()
    if isinstance(http, Publisher):
        run.visible.append(noticed - scheduled)
        run.last_visible_at = max(run.last_visible_at, noticed)
        run.marks[post_id] = [wall + t for t in (scheduled, accepted, noticed, noticed)]
        return
    while True:
        if (await http.request("GET", f"/api/posts/{post_id}"))[0] == 200:
            now = time.monotonic()
            run.visible.append(now - scheduled)
            run.last_visible_at = max(run.last_visible_at, now)
            run.marks[post_id] = [wall + t for t in (scheduled, accepted, noticed, now)]
            return
        if time.monotonic() - scheduled > VISIBLE_TIMEOUT_S:
            run.invisible += 1
            return
        await asyncio.sleep(0.02)


def direct_author(headers: dict[str, str]) -> str:
    return "bench-direct-" + headers["Authorization"][-8:].lower()


async def open_loop(http: MiniHTTP | Publisher, users: list[dict[str, str]], bodies: list[str], rate: int,
                    notices: Notices) -> Run:  # fmt: skip
    run = Run(rate, len(bodies) / rate)
    tasks = []
    start = time.monotonic() + 0.05
    for i, body in enumerate(bodies):
        scheduled = start + i / rate
        delay = scheduled - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one_post(http, users[i % len(users)], body, scheduled, notices, run)))
    sent_by = start + len(bodies) / rate
    await asyncio.gather(*tasks)
    run.last_visible_at -= sent_by  # how long after the last scheduled send everything was visible
    return run


async def count_live(pg: asyncpg.Pool, ids: list[str]) -> int:
    return await pg.fetchval("SELECT count(*) FROM posts WHERE post_id = ANY($1) AND deleted_at IS NULL", ids)


# Ceiling and figures ------------------------------------------------------------------------------------------


def producer_perf(settings: Settings, n: int, size: int) -> float:
    """Kafka's ProducerPerformance (acks=all, 1 producer) on a fresh topic: records/s."""
    libs = settings.home / "kafka" / settings.kafka_version / "libs"
    cmd = [
        "java", "-Xmx512m", "-cp", f"{libs}/*", "org.apache.kafka.tools.ProducerPerformance",
        "--topic", f"bench-pp-{new_id().lower()}", "--num-records", str(n), "--record-size", str(size),
        "--throughput", "-1", "--producer-props", f"bootstrap.servers={settings.bootstrap_servers}", "acks=all",
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1].split(" records sent, ")[1].split(" records/sec")[0])


def record_size(body: str) -> int:
    event = PostCreated(payload=PostCreatedData(post_id=new_id(), author_id="dev-bench-u0", body=body))
    return len(event.model_dump_json())


def pcts(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    if not values:
        return {}

    def at(q: float) -> float:
        return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 1)

    return {"n": len(values), "p50_ms": at(0.5), "p95_ms": at(0.95), "p99_ms": at(0.99), "max_ms": at(1.0)}


def spread(values: list[float], digits: int = 1) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
    }


@dataclass
class Harness:
    settings: Settings
    http: MiniHTTP
    pg: asyncpg.Pool
    users: list[dict[str, str]]
    notices: Notices
    watched: Watched
    offsets: AIOKafkaConsumer
    direct: Publisher | None = None  # --direct: the driver publishes post-created itself

    async def topic_ends(self) -> dict[str, int]:
        """Records in the post topics so far: others publish too, and the bench's consumers handle theirs as well."""
        names = (POST_CREATED.name, POST_PARSED.name, POST_DELETED.name)
        tps = [TopicPartition(name, p) for name in names for p in range(BY_NAME[name].partitions)]
        ends = await self.offsets.end_offsets(tps)
        return {name: sum(offset for tp, offset in ends.items() if tp.topic == name) for name in names}

    async def xacts(self) -> int:
        """Transactions committed in the benchmark's database so far (the statistics lag up to 0.5 s)."""
        await self.pg.execute("SELECT pg_stat_clear_snapshot()")
        sql = "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        return int(await self.pg.fetchval(sql))

    async def partition_ends(self) -> dict[TopicPartition, int]:
        names = (POST_CREATED.name, POST_PARSED.name)
        return await self.offsets.end_offsets(
            [TopicPartition(n, p) for n in names for p in range(BY_NAME[n].partitions)]
        )

    async def record_times(self, since: dict[TopicPartition, int]) -> dict[str, dict[str, float]]:
        """topic -> post id (the record key) -> the record's CreateTime in seconds, for the records since `since`."""
        ends = await self.partition_ends()
        wanted = {tp: end for tp, end in ends.items() if end > since[tp]}
        times: dict[str, dict[str, float]] = {tp.topic: {} for tp in since}
        if not wanted:
            return times
        self.offsets.assign(list(wanted))
        for tp in wanted:
            self.offsets.seek(tp, since[tp])
        while wanted:
            for tp, records in (await self.offsets.getmany(timeout_ms=1000)).items():
                for record in records:
                    if record.offset < wanted.get(tp, 0):
                        times[tp.topic].setdefault(record.key.decode(), record.timestamp / 1000)
                if records and records[-1].offset + 1 >= wanted.get(tp, 0):
                    wanted.pop(tp, None)
        return times

    def hops(self, run: Run, times: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        """Where one post's time to visible goes, hop by hop (Kafka's CreateTime is set when a producer sends)."""
        created, parsed = times[POST_CREATED.name], times[POST_PARSED.name]
        spans: dict[str, list[float]] = {
            "gateway_to_send": [], "send_to_202": [], "preparse_hop": [], "posts_hop": [], "notice_to_200": []
        }  # fmt: skip
        for post_id, (scheduled, accepted, noticed, visible) in run.marks.items():
            if post_id not in created or post_id not in parsed:
                continue
            spans["gateway_to_send"].append(created[post_id] - scheduled)
            spans["send_to_202"].append(accepted - created[post_id])
            spans["preparse_hop"].append(parsed[post_id] - created[post_id])
            spans["posts_hop"].append(noticed - parsed[post_id])
            spans["notice_to_200"].append(visible - noticed)
        return {name: pcts(values) for name, values in spans.items()}

    async def measure(self, rate: int, seconds: float, seed: int) -> dict[str, Any]:
        bodies = make_bodies(max(1, int(rate * seconds)), seed)
        xacts_before = await self.xacts()
        before, ends_before, since = self.watched.ticks(), await self.topic_ends(), await self.partition_ends()
        run = await open_loop(self.direct or self.http, self.users, bodies, rate, self.notices)
        after, ends_after = self.watched.ticks(), await self.topic_ends()
        xacts = await self.xacts() - xacts_before
        hops = self.hops(run, await self.record_times(since))
        live = await count_live(self.pg, run.ids)
        if os.environ.get("BENCH_TIMELINE"):
            t0 = run.timeline[0][0] if run.timeline else 0
            worst: dict[int, float] = {}
            for at, latency in run.timeline:
                worst[int(at - t0)] = max(worst.get(int(at - t0), 0), latency)
            print("worst accepted ms per second:", [round(worst[k] * 1000) for k in sorted(worst)])
        n = max(1, len(run.ids))
        cpu = {name: round((after[name] - before[name]) * 1000 / CLK_TCK / n, 3) for name in before}
        return {
            "rate": rate,
            "posts": len(bodies),
            "accepted": pcts(run.accepted),
            "visible": pcts(run.visible),
            "hops": hops,
            "count_in": len(run.ids),
            "count_out": live,
            "errors": run.errors,
            "error_statuses": run.error_statuses,
            "invisible": run.invisible,
            "drain_s": round(run.last_visible_at, 3),
            "cpu_ms_per_post": cpu,
            # the benchmark's own database: commits per post (each one a WAL flush), statements and reads included
            "pg_xacts_per_post": round(xacts / n, 2),
            # posts others published meanwhile also cost the bench's consumers, Kafka and PostgreSQL CPU
            "topic_records": {name: ends_after[name] - ends_before[name] for name in ends_after},
        }


async def login_users(http: httpx.AsyncClient, n: int) -> list[dict[str, str]]:
    users = []
    for i in range(n):
        response = await http.post("/auth/dev-login", json={"login": f"bench-u{i}"})
        response.raise_for_status()
        users.append({"Authorization": f"Bearer {response.json()['access_token']}"})
    return users


async def until_up(http: MiniHTTP, users: list[dict[str, str]], notices: Notices) -> None:
    """Wait until a post goes all the way through (consumers joined their groups)."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        post_id = orjson.loads((await http.request("POST", "/api/posts", users[0], {"body": "warm-up #bench"}))[1])[
            "id"
        ]
        await notices.wait(post_id, 10)
        if (await http.request("GET", f"/api/posts/{post_id}"))[0] == 200:
            return
    raise RuntimeError("the pipeline did not project a post within 3 minutes")


async def wait_healthy(http: httpx.AsyncClient, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the gateway exited")
        try:
            if (await http.get("/healthz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError("the gateway did not answer within 60 s")


async def find_max(harness: Harness, start: int, ceiling: float) -> dict[str, Any]:
    """Double the rate from `start` (or halve it) until it fails, then bisect; ok: visible p99 < 1 s, drain < 2 s."""
    ok_rate, bad_rate, best = 0, 0, None
    rate = start
    for step in range(8):
        result = await harness.measure(rate, 10, seed=1000 + step)
        ok = (
            result["visible"].get("p99_ms", 1e9) < 1000
            and result["drain_s"] < 2
            and result["count_out"] == result["posts"]
            and not result["errors"]
        )
        print(f"  step {rate}/s: visible p99 {result['visible'].get('p99_ms')} ms, drain {result['drain_s']} s, "
              f"errors {result['errors']}: {'ok' if ok else 'over'}")  # fmt: skip
        if ok:
            ok_rate, best = rate, result
        else:
            bad_rate = rate
        if bad_rate and bad_rate - ok_rate <= max(25, ok_rate // 10):
            break
        rate = rate * 2 if not bad_rate else (ok_rate + bad_rate) // 2 if ok_rate else bad_rate // 2
        await asyncio.sleep(5)  # let any backlog drain before the next step
    return {"rate": ok_rate, "ratio_to_producer_perf": round(ok_rate / ceiling, 4), "step": best}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--find-max", action="store_true")
    parser.add_argument("--app-groups", action="store_true", help="run `chirp consume --all` (the app's groups)")
    parser.add_argument("--consumers", default="", help="only these consumers (comma-separated), e.g. preparse,posts")
    parser.add_argument("--no-ceiling", action="store_true")
    parser.add_argument("--clear", action="store_true", help="publish in clear (no sealing), to compare")
    parser.add_argument("--direct", action="store_true", help="publish post-created from the driver (consumers alone)")
    parser.add_argument("--logs", help="directory for the children's logs (default: discarded)")
    args = parser.parse_args()
    if args.clear:
        os.environ["CHIRP_ERASURE_SEAL"] = "false"  # the children inherit it
    await prepare_stores(Settings(), REDIS_DB)  # empty Redis database, migrated chirp_bench
    settings = Settings(postgres_db=BENCH_DB, redis_db=REDIS_DB)
    await ensure_topics(settings)
    size = record_size(make_bodies(1, 0)[0])
    ceiling = [] if args.no_ceiling else [producer_perf(settings, 100_000, size)]

    if args.app_groups:
        consumers_cmd = [sys.executable, "-m", "ops", "consume", "--all", "--metrics-port", "0"]
    else:
        await fast_forward(settings, args.consumers)
        consumers_cmd = [sys.executable, "-m", "bench.pipeline_consumers", args.consumers]
    logs = Path(args.logs) if args.logs else None
    gateway = spawn([sys.executable, "-m", "ops", "gateway"], settings, logs and logs / "gateway.log")
    consumers = spawn(consumers_cmd, settings, logs and logs / "consumers.log")
    http = httpx.AsyncClient(base_url=f"http://{settings.host}:{PORT}", timeout=60)  # setup requests only
    mini = MiniHTTP(settings.host, PORT)
    redis_client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    pg = await asyncpg.create_pool(settings.postgres_dsn(), min_size=1, max_size=2)
    notices = Notices()
    listener = asyncio.create_task(notices.listen(redis_client))
    offsets = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers)
    await offsets.start()
    direct = make_broker(settings)
    try:
        await wait_healthy(http, gateway)
        users = await login_users(http, args.users)
        await until_up(mini, users, notices)
        idle_rss = {"gateway": rss_mb(gateway.pid), "consumers": rss_mb(consumers.pid)}
        pids = {"gateway": (gateway.pid, False), "consumers": (consumers.pid, False), "driver": (os.getpid(), False)}
        for name, pid in (("kafka", kafka_service.pid(settings)), ("redis", redis_service.pid(settings)),
                          ("postgres", postmaster_pid(settings))):  # fmt: skip
            if pid:
                pids[name] = (pid, name == "postgres")
        harness = Harness(settings, mini, pg, users, notices, Watched(pids), offsets)
        if args.direct:
            await direct.start()
            harness.direct = Publisher(direct, keys=PgKeyStore.for_sealing(settings, pg))
            for author in {direct_author(user) for user in users}:  # as registering makes a user's key
                if harness.direct.keys is not None:
                    await harness.direct.keys.sealing_key(user_key(author), author)
        runs = []
        for i in range(args.runs):
            result = await harness.measure(args.rate, args.seconds, seed=i)
            runs.append(result)
            result["loadavg_1m"] = round(os.getloadavg()[0], 2)
            print(f"run {i + 1} (load {result['loadavg_1m']}): accepted {result['accepted']} "
                  f"visible {result['visible']} in {result['count_in']} out {result['count_out']}")  # fmt: skip
            await asyncio.sleep(2)
        peak_rss = {"gateway": rss_mb(gateway.pid, "VmHWM"), "consumers": rss_mb(consumers.pid, "VmHWM")}
        maximum = await find_max(harness, args.rate, ceiling[0]) if args.find_max and ceiling else None
    finally:
        listener.cancel()
        await http.aclose()
        await mini.close()
        await offsets.stop()
        if args.direct:
            await direct.stop()
        await redis_client.aclose()
        await pg.close()
        for proc in (gateway, consumers):
            proc.terminate()
            proc.wait(timeout=60)
    if not args.no_ceiling:
        ceiling.append(producer_perf(settings, 100_000, size))
    report(args, size, ceiling, runs, idle_rss, peak_rss, maximum)


def report(args: argparse.Namespace, size: int, ceiling: list[float], runs: list[dict[str, Any]],
           idle_rss: dict[str, float], peak_rss: dict[str, float], maximum: dict[str, Any] | None) -> None:  # fmt: skip
    def over_runs(path: tuple[str, str]) -> dict[str, float]:
        return spread([r[path[0]][path[1]] for r in runs if path[1] in r[path[0]]])

    processes = list(runs[0]["cpu_ms_per_post"])
    totals = [sum(r["cpu_ms_per_post"].values()) for r in runs]
    result = {
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": commit(),
        "loadavg_1m_at_end": os.getloadavg()[0],  # the box is shared: how busy it was
        "rate_per_s": args.rate,
        "seconds": args.seconds,
        "runs": args.runs,
        "users": args.users,
        "groups": "app" if args.app_groups else "bench",
        "sealed": not args.clear,
        "consumers": args.consumers or "all",
        "direct": args.direct,
        "record_bytes": size,
        "accepted_ms": {q: over_runs(("accepted", q)) for q in ("p50_ms", "p95_ms", "p99_ms", "max_ms")},
        "visible_ms": {q: over_runs(("visible", q)) for q in ("p50_ms", "p95_ms", "p99_ms", "max_ms")},
        "hops_ms": {
            hop: {q: spread([r["hops"][hop][q] for r in runs if q in r["hops"][hop]]) for q in ("p50_ms", "p99_ms")}
            for hop in runs[0]["hops"]
        },
        "loadavg_1m_per_run": [r["loadavg_1m"] for r in runs],
        "count_in": sum(r["count_in"] for r in runs),
        # more than count_in: others published during the runs (their events cost the bench's consumers too)
        "topic_records": {t: sum(r["topic_records"][t] for r in runs) for t in runs[0]["topic_records"]},
        "count_out": sum(r["count_out"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
        "cpu_ms_per_post": {p: spread([r["cpu_ms_per_post"][p] for r in runs], 3) for p in processes},
        # What the CPU figures imply: posts/s the processes measured could carry per core of their own.
        "cpu_ms_per_post_total": spread(totals, 3),
        "pg_xacts_per_post": spread([r["pg_xacts_per_post"] for r in runs], 2),
        "posts_per_s_per_core": round(1000 / statistics.median(totals)),
        "rss_mb": {"idle": idle_rss, "peak": peak_rss},
        "producer_perf_per_s": [round(c) for c in ceiling],
        "rate_to_producer_perf": round(args.rate / statistics.median(ceiling), 4) if ceiling else None,
        "max_sustained": maximum,
    }
    print(f"\n{'figure':<28} median (min..max) over {args.runs} runs of {args.seconds:g} s at {args.rate}/s")
    for kind in ("accepted_ms", "visible_ms"):
        for q, s in result[kind].items():
            print(f"{kind[:-3] + ' ' + q:<28} {s['median']:>9} ({s['min']}..{s['max']})")
    for hop, by_q in result["hops_ms"].items():
        print(f"{'hop ' + hop:<28} p50 {by_q['p50_ms']['median']:>7}  p99 {by_q['p99_ms']['median']:>7}")
    for name, s in result["cpu_ms_per_post"].items():
        print(f"{'cpu-ms/post ' + name:<28} {s['median']:>9} ({s['min']}..{s['max']})")
    print(f"{'cpu-ms/post all':<28} {result['cpu_ms_per_post_total']['median']:>9} "
          f"(= {result['posts_per_s_per_core']} posts/s per core)")  # fmt: skip
    print(f"{'pg commits/post':<28} {result['pg_xacts_per_post']['median']:>9}")
    print(f"{'count in / out':<28} {result['count_in']} / {result['count_out']} (errors {result['errors']}; "
          f"records that entered the post topics meanwhile: {result['topic_records']})")  # fmt: skip
    print(f"{'rss MB idle / peak':<28} {idle_rss} / {peak_rss}")
    print(f"{'ProducerPerformance rec/s':<28} {result['producer_perf_per_s']} (record {size} B)")
    if maximum:
        print(f"{'max sustained posts/s':<28} {maximum.get('rate')} (ratio {maximum.get('ratio_to_producer_perf')})")
    RESULTS.parent.mkdir(exist_ok=True)
    with RESULTS.open("a") as out:
        out.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))  # `bench.pipeline_consumers` when run as a script
    asyncio.run(main())
