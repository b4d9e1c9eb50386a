"""Notifications end to end: a mention posted → visible at GET /api/notifications of the person mentioned, open loop.

    .venv/bin/python bench/notifications.py [--rate 200] [--seconds 20] [--runs 3] [--users 16]

Prints each run and appends JSON lines to bench/results/notifications.jsonl. Same processes and isolation as
bench/pipeline.py, which names the topics (bench.pipeline is imported before anything imports schemas.topics): the
gateway on a free port and the consumers it needs as children, `<CHIRP_TOPIC_NAMESPACE>bench-` topics,
`<CHIRP_CONSUMER_GROUP_PREFIX>bench-` groups, database `<CHIRP_POSTGRES_TEST_DB or chirp>_bench`, Redis database
`CHIRP_REDIS_DB` (10 when unset; emptied first).
- Load: `--users` dev-login users; action i is user i mod n posting a mention of user i+1 mod n, at `--rate` per
  second, open loop: every latency counts from the action's scheduled time.
- accepted: scheduled → the post's 202. visible: scheduled → the mentioned person's `GET /api/notifications`
  lists the item. The driver subscribes to the bell channel and, on each notice for a person with actions pending,
  reads their first page once (no blind polling), resolving every pending item it shows.
- Ceiling (same run, after each run): one Kafka hop at the same rate, open loop, on a scratch topic (produce with
  acks=all → a consumer polling it sees the record). A notification takes two hops (post-created → preparse →
  post-parsed → notifications) plus the gateway's POST and GET, so its p99 is reported against two hops' p99.
- CPU-ms per action of the gateway and of the consumers' process (utime+stime over the run / actions): what the
  machine's load disturbs least.
- Paging: a reader with 100,000 items (written into the model directly, past the per-user cap the consumer keeps,
  to show the read path does not depend on the list's length) against one with 10, `GET /api/notifications` of
  20 items, first and later pages, the two readers' requests alternating, in the same run: median latency of each
  and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
import httpx
import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench import commit
from bench.pipeline import (
    CLK_TCK,
    PORT,
    REDIS_DB,
    MiniHTTP,
    Notices,
    cpu_ticks,
    fast_forward,
    login_users,
    pcts,
    spawn,
    until_up,
    wait_healthy,
)
from bench.rebuild import BENCH_DB, prepare_stores
from chirp.settings import Settings
from consumers.notifications import BELL_CHANNEL
from producers.broker import ensure_topics
from schemas.events import new_id
from schemas.topics import NAMESPACE
from store.notifications import actors_key, item_key, items_key

CONSUMERS = "preparse,posts,users,notifications"
TIMEOUT_S = 30.0
RESULTS = Path(__file__).resolve().parent / "results" / "notifications.jsonl"


class Inboxes:
    """Pending mentions per reader, resolved when a read of the reader's notifications (after a bell) shows them."""

    def __init__(self, http: MiniHTTP, headers: dict[str, dict[str, str]], ids: dict[str, str]) -> None:
        self.http, self.headers, self.ids = http, headers, ids
        self.pending: dict[str, dict[str, asyncio.Future[float]]] = defaultdict(dict)
        self.reading: set[str] = set()
        self.again: set[str] = set()  # a bell rang while a read was under way: read once more after it
        self.last_bell: dict[str, float] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def id_of(self, handle: str) -> str:
        return self.ids[handle]

    async def listen(self, client: aioredis.Redis) -> None:
        pubsub = client.pubsub()
        await pubsub.subscribe(BELL_CHANNEL)
        async for message in pubsub.listen():
            if message["type"] == "message":
                reader = orjson.loads(message["data"])["user_id"]
                self.last_bell[reader] = time.monotonic()
                self.ring(reader)

    def ring(self, reader: str) -> None:
        if not self.pending.get(reader):
            return
        if reader in self.reading:
            self.again.add(reader)
        else:
            task = asyncio.create_task(self.read(reader))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def read(self, reader: str) -> None:
        self.reading.add(reader)
        try:
            status, data = await self.http.request("GET", "/api/notifications?limit=20", self.headers[reader])
            now = time.monotonic()
            if status == 200:
                for item in orjson.loads(data)["items"]:
                    future = self.pending[reader].pop(item["id"], None)
                    if future is not None and not future.done():
                        future.set_result(now)
        finally:
            self.reading.discard(reader)
        if reader in self.again:
            self.again.discard(reader)
            self.ring(reader)

    def expect(self, reader: str, item_id: str, scheduled: float) -> asyncio.Future[float]:
        future = self.pending[reader][item_id] = asyncio.get_running_loop().create_future()
        if self.last_bell.get(reader, 0) >= scheduled:  # its bell may have rung before the 202 came back
            self.ring(reader)
        return future


async def one(http: MiniHTTP, inboxes: Inboxes, author: dict[str, str], reader: str, scheduled: float,
              out: dict[str, list[float] | int]) -> None:  # fmt: skip
    status, data = await http.request("POST", "/api/posts", author, {"body": f"Hello @{reader} from the bench"})
    if status != 202:
        out["errors"] += 1  # type: ignore[operator]
        return
    post_id = orjson.loads(data)["id"]
    out["accepted"].append(time.monotonic() - scheduled)  # type: ignore[union-attr]
    seen = inboxes.expect(inboxes.id_of(reader), post_id, scheduled)  # a mention's item id is the post's id
    try:
        at = await asyncio.wait_for(seen, TIMEOUT_S)
    except TimeoutError:
        out["invisible"] += 1  # type: ignore[operator]
        return
    out["visible"].append(at - scheduled)  # type: ignore[union-attr]


async def measure(http: MiniHTTP, inboxes: Inboxes, users: list[dict[str, str]], handles: list[str], rate: int,
                  seconds: float) -> dict[str, object]:  # fmt: skip
    out: dict[str, list[float] | int] = {"accepted": [], "visible": [], "errors": 0, "invisible": 0}
    n = int(rate * seconds)
    start = time.monotonic() + 0.05
    tasks = []
    for i in range(n):
        scheduled = start + i / rate
        delay = scheduled - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        author, reader = users[i % len(users)], handles[(i + 1) % len(users)]
        tasks.append(asyncio.create_task(one(http, inboxes, author, reader, scheduled, out)))
    await asyncio.gather(*tasks)
    return {"rate": rate, "actions": n, "accepted": pcts(out["accepted"]),  # type: ignore[arg-type]
            "visible": pcts(out["visible"]), "errors": out["errors"],  # type: ignore[arg-type]
            "invisible": out["invisible"]}  # fmt: skip


async def kafka_hop(settings: Settings, rate: int, seconds: float) -> dict[str, float]:
    """One Kafka hop at `rate`, open loop, on a scratch topic deleted afterwards: scheduled → consumed."""
    topic = f"{NAMESPACE}hop-{new_id().lower()}"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.bootstrap_servers, auto_offset_reset="earliest")
    await producer.start()
    await consumer.start()
    seen: list[float] = []
    n = int(rate * seconds)

    async def read() -> None:
        while len(seen) < n:
            for records in (await consumer.getmany(timeout_ms=100)).values():
                now = time.monotonic()
                seen.extend(now - float(r.value) for r in records)  # type: ignore[arg-type]

    try:
        await consumer.getmany(timeout_ms=500)  # assigned before the first record
        reader = asyncio.create_task(read())
        start = time.monotonic() + 0.05
        for i in range(n):
            scheduled = start + i / rate
            if (delay := scheduled - time.monotonic()) > 0:
                await asyncio.sleep(delay)
            await producer.send(topic, str(scheduled).encode())
        await asyncio.wait_for(reader, TIMEOUT_S)
    finally:
        await producer.stop()
        await consumer.stop()
        await admin.delete_topics([topic])
        await admin.close()
    return pcts(seen)


async def paging(redis_client: aioredis.Redis, http: MiniHTTP, readers: list[tuple[str, dict[str, str]]],
                 actors: list[str], rounds: int = 200) -> dict[str, object]:  # fmt: skip
    """Median `GET /api/notifications` of a reader with 100,000 items against one with 10, first and deep pages."""
    t0 = int(time.time() * 1000) - 200_000
    for (user_id, _), size in zip(readers, (100_000, 10), strict=True):
        for start in range(0, size, 5000):
            async with redis_client.pipeline(transaction=False) as pipe:
                for i in range(start, min(size, start + 5000)):
                    item_id = f"follow-{i:06d}"
                    pipe.hset(item_key(user_id, item_id), mapping={"type": "follow", "post": ""})
                    pipe.zadd(actors_key(user_id, item_id), {actors[i % len(actors)]: t0 + i})
                    pipe.zadd(items_key(user_id), {item_id: t0 + i})
                await pipe.execute()
    times: dict[str, list[float]] = {"100k": [], "10": []}
    cursors = {"100k": "", "10": ""}
    for i in range(rounds):  # alternating, so the machine's load falls on both alike
        for label, (_, headers) in zip(("100k", "10"), readers, strict=True):
            cursor = cursors[label]
            path = "/api/notifications?limit=20" + (f"&cursor={cursor}" if cursor and i % 2 else "")
            began = time.perf_counter()
            status, data = await http.request("GET", path, headers)
            times[label].append(time.perf_counter() - began)
            assert status == 200, data
            cursors[label] = orjson.loads(data)["next_cursor"] or ""
    out: dict[str, object] = {label: pcts(found) for label, found in times.items()}
    out["ratio_p50"] = round(out["100k"]["p50_ms"] / out["10"]["p50_ms"], 3)  # type: ignore[index]
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--no-paging", action="store_true", help="skip the 100,000-item paging figure")
    args = parser.parse_args()
    await prepare_stores(Settings(), REDIS_DB)
    settings = Settings(postgres_db=BENCH_DB, redis_db=REDIS_DB)
    await ensure_topics(settings)
    await fast_forward(settings, CONSUMERS)
    gateway = spawn([sys.executable, "-m", "ops", "gateway"], settings, None)
    consumers = spawn([sys.executable, "-m", "bench.pipeline_consumers", CONSUMERS], settings, None)
    http = httpx.AsyncClient(base_url=f"http://{settings.host}:{PORT}", timeout=60)
    mini = MiniHTTP(settings.host, PORT)
    redis_client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    pg = await asyncpg.create_pool(settings.postgres_dsn(), min_size=1, max_size=2)
    notices = Notices()
    tasks = [asyncio.create_task(notices.listen(redis_client))]
    try:
        await wait_healthy(http, gateway)
        users = await login_users(http, args.users)
        handles = [f"bench-u{i}" for i in range(args.users)]
        await until_up(mini, users, notices)
        known = "SELECT count(*) FROM users WHERE handle = ANY($1::text[])"
        while await pg.fetchval(known, handles) < len(handles):  # noqa: ASYNC110 (a row to wait for, not an event)
            await asyncio.sleep(0.2)
        ids = dict(await pg.fetch("SELECT handle, user_id FROM users WHERE handle = ANY($1::text[])", handles))
        inboxes = Inboxes(mini, {ids[h]: u for h, u in zip(handles, users, strict=True)}, ids)  # ids are opaque
        tasks.append(asyncio.create_task(inboxes.listen(redis_client)))
        await asyncio.sleep(0.5)
        await measure(mini, inboxes, users, handles, 20, 2)  # warm-up
        procs = {"gateway": gateway.pid, "consumers": consumers.pid}
        for i in range(args.runs):
            before = {name: cpu_ticks(pid) for name, pid in procs.items()}
            result = await measure(mini, inboxes, users, handles, args.rate, args.seconds)
            after = {name: cpu_ticks(pid) for name, pid in procs.items()}
            actions = max(1, int(result["actions"]))  # type: ignore[call-overload]
            ms = {n: (after[n] - before[n]) * 1000 / CLK_TCK for n in procs}
            result["cpu_ms_per_action"] = {n: round(ms[n] / actions, 3) for n in procs}
            hop = await kafka_hop(settings, args.rate, min(args.seconds, 10))
            result["kafka_hop"] = hop
            visible = result["visible"]
            if hop and visible:
                result["p99_over_two_hops"] = round(visible["p99_ms"] / (2 * hop["p99_ms"]), 2)  # type: ignore[index]
            result["commit"] = commit()
            result["loadavg_1m"] = round(os.getloadavg()[0], 2)
            print(f"run {i + 1}: {result}")
            RESULTS.parent.mkdir(exist_ok=True)
            with RESULTS.open("a") as f:
                f.write(json.dumps({"at": time.time(), **result}) + "\n")
            await asyncio.sleep(2)
        if not args.no_paging:
            readers = [(ids[h], u) for h, u in zip(handles[:2], users[:2], strict=True)]
            result = {"paging": await paging(redis_client, mini, readers, [ids[h] for h in handles[2:]])}
            result.update(commit=commit(), loadavg_1m=round(os.getloadavg()[0], 2))
            print(f"paging: {result}")
            with RESULTS.open("a") as f:
                f.write(json.dumps({"at": time.time(), **result}) + "\n")
    finally:
        for task in tasks:
            task.cancel()
        await http.aclose()
        await mini.close()
        await redis_client.aclose()
        await pg.close()
        for proc in (gateway, consumers):
            proc.terminate()
            proc.wait(timeout=60)


if __name__ == "__main__":
    asyncio.run(main())
