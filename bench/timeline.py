"""Home timeline read path: `GET /api/timeline` for a user following 200 accounts, against a bare Starlette endpoint.

    .venv/bin/python bench/timeline.py [--runs 5] [--seconds 5] [--connections 32] [--workers 1] [--seed 7]
                                       [--hiding 1000]

Prints a table and appends JSON lines to bench/results/timeline.jsonl. Method: ../shared/BENCH.md.
- Stores: the Redis database `CHIRP_REDIS_DB` names, and the PostgreSQL database `CHIRP_POSTGRES_TEST_DB` names when
  set (as the tests read it: a developer's own, created when missing), else the app's (`CHIRP_POSTGRES_DB`).
- Data (deterministic from the seed, idempotent, in that database): a reader following 200 accounts that wrote
  5 posts each (200-280 characters, 0-3 hashtags from a Zipf-distributed set, a link in 30 %); the reader's timeline
  is built in Redis first, so every request takes the warm path (auth, one Redis script, one SQL query).
- Throughput: `wrk` (keep-alive, `--connections`) against the gateway (`uvicorn gateway.asgi:app`) and, alternating
  in every run, against a bare Starlette app returning the same JSON body (same uvicorn options): the ceiling.
  With one worker the server is pinned to core 0 and the load to core 1; PostgreSQL and Redis float.
- Latency: open loop at `--rate` (default: half the gateway's median throughput), timed from each request's
  scheduled send time (no coordinated omission), against both servers, `--latency-runs` times.
- CPU-ms per request of the gateway, PostgreSQL and Redis processes (utime+stime from /proc), in the wrk runs.
- `--hiding N`: a second reader with the same follows also mutes N accounts and blocks N (1 % of the mutes among
  its followees, those with the newest posts, so the Redis window reads past theirs), as the relations consumer
  records them; every run then measures it right after the plain reader on the same gateway, and the ratio of the
  two medians is printed with the git hash.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from ulid import ULID

from chirp.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: `bench` is the repo's folder
from bench import commit, ensure_database, pcts
from gateway.auth.keys import KeyRing
from gateway.auth.sessions import SessionStore
from gateway.auth.tokens import issue_access_token
from gateway.errors import JSONResponse
from store.postgres import connect
from store.relations import Change, RedisRelations
from store.timelines import PostgresTimelineSource, RedisTimelines, rebuild

RESULTS = Path(__file__).with_name("results") / "timeline.jsonl"
ROOT = Path(__file__).resolve().parents[1]
PATH = "/api/timeline"
BODY_ENV = "CHIRP_BENCH_BODY"


def bare_app() -> Starlette:
    """The ceiling: the same JSON document, serialized per request by the same response class."""
    document = orjson.loads(Path(os.environ[BODY_ENV]).read_bytes())

    async def endpoint(request: Request) -> Response:
        return JSONResponse(document)

    return Starlette(routes=[Route(PATH, endpoint)])


# Data -------------------------------------------------------------------------------------------------------


def synthetic_posts(rng: random.Random, authors: list[str], per_author: int) -> list[tuple[Any, ...]]:
    """Rows for `posts`: ids are ULIDs spread over the last days, bodies 200-280 characters."""
    tags = [f"tag{i}" for i in range(200)]
    weights = [1 / (i + 1) for i in range(len(tags))]
    words = ("the", "of", "and", "to", "in", "is", "you", "that", "it", "he", "was", "for", "on", "are", "as")
    base_ms = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)
    rows: list[tuple[Any, ...]] = []
    for i, author in enumerate(authors):
        for j in range(per_author):
            ms = base_ms + (j * len(authors) + i) * 60_000
            post_id = str(ULID.from_bytes(ms.to_bytes(6, "big") + rng.randbytes(10)))
            hashtags = sorted(set(rng.choices(tags, weights, k=rng.randint(0, 3))))
            text = " ".join(rng.choice(words) for _ in range(60))
            extra = " ".join(f"#{t}" for t in hashtags) + (" https://example.com/x" if rng.random() < 0.3 else "")
            body = (text[: rng.randint(200, 280) - len(extra) - 1] + " " + extra).strip()
            created = datetime.fromtimestamp(ms / 1000, UTC)
            rows.append((post_id, author, body, f"<p>{html.escape(body)}</p>", body, hashtags, [], [], None, created))
    return rows


def muted_followees(authors: list[str], hiding: int) -> list[str]:
    """The followees the hiding reader mutes: 1 % of its mutes, those with the newest posts (on the first page)."""
    return authors[-max(1, hiding // 100) :]


async def seed(settings: Settings, seed_value: int, followees: int, per_author: int, hiding: int) -> list[str]:
    """Create (once) the reader, the accounts it follows and their posts; build its timeline; return its id. With
    `hiding`, a second reader following the same accounts that mutes and blocks `hiding` accounts each (ids of
    both readers returned)."""
    rng = random.Random(seed_value)
    prefix = f"bench-tl{seed_value}"
    reader, authors = f"{prefix}-reader", [f"{prefix}-f{i:03d}" for i in range(followees)]
    readers = [reader, f"{prefix}-hider"] if hiding else [reader]
    now = datetime.now(UTC)
    pg = await connect(settings)
    redis = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        async with pg.acquire() as conn, conn.transaction():
            await conn.executemany(
                """INSERT INTO users (user_id, handle, display_name, avatar_url, joined_at, profile_at, registered_at)
                   VALUES ($1, $1, $2, 'https://example.com/avatar.png', $3, $3, $3) ON CONFLICT DO NOTHING""",
                [(u, f"Account {u[-3:]}", now) for u in [*readers, *authors]],
            )
            await conn.executemany(
                "INSERT INTO follows VALUES ($1, $2, true, $3) ON CONFLICT DO NOTHING",
                [(r, a, now) for r in readers for a in authors],
            )
            await conn.executemany(
                """INSERT INTO posts (post_id, author_id, body, html, text, hashtags, mentions, links, reply_to,
                   created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING""",
                synthetic_posts(rng, authors, per_author),
            )
            await conn.execute(
                """UPDATE users u SET
                     followers_count = (SELECT count(*) FROM follows f WHERE f.followee_id = u.user_id AND f.active),
                     following_count = (SELECT count(*) FROM follows f WHERE f.follower_id = u.user_id AND f.active)
                   WHERE u.user_id = ANY($1::text[])""",
                [*readers, *authors],
            )
        for user in readers:
            await rebuild(
                RedisTimelines(redis, settings.timeline_length),
                PostgresTimelineSource(pg),
                user,
                settings.fanout_max_followers,
            )
        if hiding:
            followed = muted_followees(authors, hiding)
            muted = followed + [f"{prefix}-muted{i:05d}" for i in range(hiding - len(followed))]
            blocked = [f"{prefix}-blocked{i:05d}" for i in range(hiding)]
            changes = [Change(readers[1], "mute", u, True, now) for u in muted]
            changes += [Change(readers[1], "block", u, True, now) for u in blocked]
            await RedisRelations(redis).apply(changes)
    finally:
        await pg.close()
        await redis.aclose()
    return readers


async def access_token(settings: Settings, user_id: str) -> str:
    """A session and an access token for the reader, as a login would make them."""
    redis = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        session_id, _ = await SessionStore(redis, settings.refresh_token_days).create(user_id)
    finally:
        await redis.aclose()
    return issue_access_token(
        KeyRing.from_settings(settings),
        sub=user_id,
        session_id=session_id,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl_seconds=settings.access_token_minutes * 60,
    )


# Servers and load -------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server(
    target: str, workers: int, pin: bool, env: dict[str, str], *, factory: bool = False
) -> Iterator[tuple[int, int]]:
    """A uvicorn server for `target` on a free port (core 0 when pinned); yields (port, pid) once it answers."""
    port = free_port()
    cmd = [
        sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port), "--workers",
        str(workers), "--no-access-log", "--log-level", "warning", "--loop", "uvloop", "--http", "httptools",
    ]  # fmt: skip
    if factory:
        cmd.append("--factory")
    if pin:
        cmd = ["taskset", "-c", "0", *cmd]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"{target} did not start") from None
                time.sleep(0.1)
        yield port, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def wrk(port: int, token: str, seconds: int, connections: int) -> dict[str, float]:
    """Requests/s and latency percentiles from one wrk run; fails on any non-2xx answer."""
    cmd = [
        "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency",
        "-H", f"Authorization: Bearer {token}", f"http://127.0.0.1:{port}{PATH}",
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for pct in ("50", "99"):
        value, unit = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        result[f"p{pct}_ms"] = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    return result


async def open_loop(
    port: int, token: str, rate: float, seconds: float, connections: int = 64, warmup_s: float = 1.0
) -> list[float]:
    """Latencies (s) of requests sent at a fixed rate, each timed from its scheduled send time (after a warm-up)."""
    request = f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
    total = int(rate * (seconds + warmup_s))
    skip = int(rate * warmup_s)
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.5
    latencies: list[float] = []

    async def connection(k: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for i in range(k, total, connections):
                scheduled = start + i / rate
                if (delay := scheduled - loop.time()) > 0:
                    await asyncio.sleep(delay)
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(head.decode(errors="replace"))
                length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
                await reader.readexactly(length)
                if i >= skip:
                    latencies.append(loop.time() - scheduled)
        finally:
            writer.close()

    await asyncio.gather(*(connection(k) for k in range(connections)))
    return latencies


# CPU accounting ---------------------------------------------------------------------------------------------


def _stat(pid: int | str) -> tuple[str, int, int] | None:
    """(command name, parent pid, utime+stime ticks) of a process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return stat[stat.index("(") + 1 : stat.rindex(")")], int(fields[1]), int(fields[11]) + int(fields[12])


def cpu_snapshot(server_pid: int) -> dict[int, tuple[str, int]]:
    """pid -> (group, CPU ticks) for the server process and its children, and every PostgreSQL and Redis process."""
    found = {}
    for entry in Path("/proc").iterdir():
        stat = _stat(entry.name) if entry.name.isdigit() else None
        if stat is None:
            continue
        comm, parent, ticks = stat
        pid = int(entry.name)
        if pid == server_pid or parent == server_pid:
            found[pid] = ("gateway", ticks)
        elif comm.startswith(("postgres", "redis-server")):
            found[pid] = (comm.split(":")[0].removesuffix("-server"), ticks)
    return found


def cpu_delta(before: dict[int, tuple[str, int]], after: dict[int, tuple[str, int]]) -> dict[str, int]:
    """Ticks spent per group between two snapshots (processes that ended meanwhile are not counted)."""
    spent = dict.fromkeys(("gateway", "postgres", "redis"), 0)
    for pid, (group, ticks) in after.items():
        spent[group] += ticks - before.get(pid, (group, 0))[1]
    return spent


def latency_summary(runs: list[dict[str, float]]) -> dict[str, object]:
    """Median (min-max) of each percentile over the open-loop runs."""
    return {
        key: {
            "median": statistics.median(r[key] for r in runs),
            "min": min(r[key] for r in runs),
            "max": max(r[key] for r in runs),
        }
        for key in ("p50_ms", "p99_ms", "max_ms")
    } | {"runs": len(runs), "requests_per_run": runs[0]["n"]}


def summary(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values)), "min": round(min(values)), "max": round(max(values))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--latency-seconds", type=int, default=10)
    parser.add_argument("--latency-runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rate", type=float, default=0, help="open-loop rate; default half the measured throughput")
    parser.add_argument("--workers", type=int, default=1, help="gateway workers; 1 pins server and load")
    parser.add_argument("--followees", type=int, default=200)
    parser.add_argument("--posts-per-account", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--hiding", type=int, default=0, help="also measure a reader muting and blocking N each")
    args = parser.parse_args()
    if "CHIRP_POSTGRES_TEST_DB" in os.environ:  # the gateway under test reads the same environment
        os.environ["CHIRP_POSTGRES_DB"] = os.environ["CHIRP_POSTGRES_TEST_DB"]
    settings = Settings()
    asyncio.run(ensure_database(settings))
    pin = args.workers == 1
    if pin:
        os.sched_setaffinity(0, {1})  # the load (wrk, the open-loop client) on core 1
    readers = asyncio.run(seed(settings, args.seed, args.followees, args.posts_per_account, args.hiding))
    token = asyncio.run(access_token(settings, readers[0]))
    hider_token = asyncio.run(access_token(settings, readers[1])) if args.hiding else ""
    hiding: list[dict[str, float]] = []
    env = {**os.environ}
    tick = os.sysconf("SC_CLK_TCK")
    ours: list[dict[str, float]] = []
    bare: list[dict[str, float]] = []
    cpu: dict[str, float] = dict.fromkeys(("gateway", "postgres", "redis"), 0.0)
    served = 0
    with (
        tempfile.NamedTemporaryFile(suffix=".json") as body_file,
        server("gateway.asgi:app", args.workers, pin, env) as (port, pid),
    ):
        response = subprocess.run(
            ["curl", "-sf", "-H", f"Authorization: Bearer {token}", f"http://127.0.0.1:{port}{PATH}"],
            capture_output=True,
            check=True,
        ).stdout
        document = orjson.loads(response)
        assert len(document["items"]) == 20 and document["partial"] is False, document
        if hider_token:
            hidden = subprocess.run(
                ["curl", "-sf", "-H", f"Authorization: Bearer {hider_token}", f"http://127.0.0.1:{port}{PATH}"],
                capture_output=True,
                check=True,
            ).stdout
            shown = orjson.loads(hidden)
            assert len(shown["items"]) == 20 and shown["partial"] is False, shown
            authors = [f"bench-tl{args.seed}-f{i:03d}" for i in range(args.followees)]
            assert {p["author"]["handle"] for p in shown["items"]}.isdisjoint(muted_followees(authors, args.hiding))
        Path(body_file.name).write_bytes(response)
        env[BODY_ENV] = body_file.name
        with server("bench.timeline:bare_app", args.workers, pin, env, factory=True) as (bare_port, _):
            wrk(port, token, 1, args.connections)  # warm-up: connections, prepared statements
            wrk(bare_port, token, 1, args.connections)
            if hider_token:
                wrk(port, hider_token, 1, args.connections)
            for _ in range(args.runs):
                bare.append(wrk(bare_port, token, args.seconds, args.connections))
                before = cpu_snapshot(pid)
                ours.append(wrk(port, token, args.seconds, args.connections))
                spent = cpu_delta(before, cpu_snapshot(pid))
                served += int(ours[-1]["rps"] * args.seconds)
                for name in cpu:
                    cpu[name] += spent[name] * 1000 / tick
                if hider_token:
                    hiding.append(wrk(port, hider_token, args.seconds, args.connections))
            half = args.rate or statistics.median(r["rps"] for r in ours) / 2
            lat_ours, lat_bare = [], []
            for _ in range(args.latency_runs):
                lat_ours.append(pcts(asyncio.run(open_loop(port, token, half, args.latency_seconds))))
                lat_bare.append(pcts(asyncio.run(open_loop(bare_port, token, half, args.latency_seconds))))
    ratio = statistics.median(r["rps"] for r in ours) / statistics.median(r["rps"] for r in bare)
    result = {
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": commit(),
        "workers": args.workers,
        "pinned": pin,
        "connections": args.connections,
        "followees": args.followees,
        "page_items": 20,
        "response_bytes": len(response),
        "bare_rps": summary([r["rps"] for r in bare]),
        "timeline_rps": summary([r["rps"] for r in ours]),
        "timeline_to_bare_ratio": round(ratio, 3),
        "timeline_wrk_p50_ms": round(statistics.median(r["p50_ms"] for r in ours), 2),
        "timeline_wrk_p99_ms": round(statistics.median(r["p99_ms"] for r in ours), 2),
        "open_loop_rate_per_s": round(half),
        "open_loop_timeline": latency_summary(lat_ours),
        "open_loop_bare": latency_summary(lat_bare),
        # PostgreSQL and Redis: every process of theirs on the box, so whatever else runs is counted too.
        "cpu_ms_per_request": {name: round(ms / served, 3) for name, ms in cpu.items()},
    }
    if hiding:
        result["hiding"] = args.hiding
        result["hiding_timeline_rps"] = summary([r["rps"] for r in hiding])
        median_hiding = statistics.median(r["rps"] for r in hiding)
        result["hiding_to_plain_ratio"] = round(median_hiding / statistics.median(r["rps"] for r in ours), 3)
        result["git"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT, check=False
        ).stdout.strip()
    print(f"{'figure':<26} value")
    for key, value in result.items():
        print(f"{key:<26} {value}")
    RESULTS.parent.mkdir(exist_ok=True)
    with RESULTS.open("a") as out:
        out.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
