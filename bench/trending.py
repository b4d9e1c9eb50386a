"""Trending read figures: `GET /api/trending` requests/s against a bare Starlette endpoint returning the same JSON.

    .venv/bin/python bench/trending.py [--runs 5] [--seconds 5] [--connections 32] [--redis-db N]

Prints a table and appends JSON lines to bench/results/trending.jsonl. Method: ../shared/BENCH.md.
1. A full ranking (50 hashtags computed by the trending store from synthetic bursts, 50 users) is stored in a Redis
   database of its own (`--redis-db`, default `CHIRP_REDIS_DB` when set, else 15, so live keys are untouched), as the
   trending consumer would store it (its trending keys there are replaced).
2. The gateway (`gateway.asgi:app`, that Redis database) and a bare Starlette app answering the same bytes run in
   turn under the same uvicorn settings (one worker, httptools, uvloop, no access log), pinned to core 0; wrk runs
   on core 1 (`wrk -t1 -c{connections} --latency`) against `/api/trending?window=1h` (the default limit, 10).
3. Runs alternate ceiling and gateway; medians of `--runs` (min-max) and the ratio of the medians. The gateway's
   own `/healthz` (a constant JSON through the same middleware and router) is measured too, to show how much of the
   gap is the app's shared per-request cost rather than this endpoint; its ratio is to the same ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from chirp.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: `bench` is the repo's folder
from bench import commit

RESULTS = Path(__file__).with_name("results") / "trending.jsonl"
ROOT = Path(__file__).resolve().parents[1]
PATH = "/api/trending?window=1h"
BODY_ENV = "CHIRP_BENCH_TRENDING_BODY"


# The ceiling: the same bytes from a bare endpoint ---------------------------------------------------------------


async def _bare(request: Request) -> Response:
    return Response(_BODY, media_type="application/json")


_BODY = Path(os.environ[BODY_ENV]).read_bytes() if BODY_ENV in os.environ else b"{}"
bare_app = Starlette(routes=[Route("/api/trending", _bare)])


# Data ---------------------------------------------------------------------------------------------------------


async def store_ranking(settings: Settings) -> None:
    """A full 1h ranking in the bench Redis database, computed by the trending store from synthetic bursts."""
    from store.trending import PostActivity, RedisTrending

    client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        counts = RedisTrending(client)
        stale = [k async for k in client.scan_iter(match=f"{counts.p}*", count=1000)]
        if stale:
            await client.unlink(*stale)
        now = time.time() - 60
        posts = [
            PostActivity(f"p{t}-{a}", f"a{a}", now - a % 50, (f"benchtag{t:02d}",), ())
            for t in range(60)
            for a in range(3 + t * 2)
        ]
        await counts.add_posts(posts)
        ranking = (await counts.refresh(None))["1h"]
        ranking["users"] = [{"handle": f"bench-user-{i}", "score": 900.0 - i, "count": 40 - i // 2} for i in range(50)]
        await client.set(counts.ranking_key("1h"), json.dumps(ranking, separators=(",", ":")))
    finally:
        await client.aclose()


# Measuring ----------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(app: str, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    cmd = ["taskset", "-c", "0", sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--workers", "1", "--http", "httptools", "--loop", "uvloop", "--no-access-log", "--log-level", "warning"]
    return subprocess.Popen(cmd, env=env, cwd=ROOT)


def wait_ready(port: int, timeout: float = 60) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = httpx.get(f"http://127.0.0.1:{port}{PATH}", timeout=2)
            if response.status_code == 200:
                return response.content
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing answers on port {port}")
        time.sleep(0.2)


def wrk(port: int, seconds: int, connections: int, path: str = PATH) -> dict[str, float]:
    cmd = ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    out = subprocess.run([*cmd, f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    found = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"{errors.group(1)} failed responses")
    return {"rps": rps, "p50": _ms(found["50"]), "p99": _ms(found["99"])}


def _ms(text: str) -> float:
    value, unit = float(re.match(r"[\d.]+", text).group()), re.sub(r"[\d.]+", "", text)  # type: ignore[union-attr]
    return round(value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit], 3)


def summary(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 1), "min": round(min(values), 1), "max": round(max(values), 1)}


def cpu_ms(pid: int) -> float:
    """utime+stime of a process so far, in ms."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def timed_wrk(pid: int, port: int, seconds: int, connections: int, path: str = PATH) -> dict[str, float]:
    """wrk, plus the server's CPU-ms per request over the run (`cpu_ms`)."""
    before = cpu_ms(pid)
    result = wrk(port, seconds, connections, path)
    return result | {"cpu_ms": (cpu_ms(pid) - before) / (result["rps"] * seconds)}


def measure(
    app: str, env: dict[str, str], seconds: int, connections: int, also: str | None = None
) -> tuple[dict[str, float], bytes, dict[str, float] | None]:
    """wrk on PATH (and on `also`, same server) after a warm-up; the body PATH answered."""
    port = free_port()
    server = serve(app, port, env)
    try:
        body = wait_ready(port)
        wrk(port, 1, connections)  # warm-up
        result = timed_wrk(server.pid, port, seconds, connections)
        return result, body, timed_wrk(server.pid, port, seconds, connections, also) if also else None
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--redis-db", type=int, default=int(os.environ.get("CHIRP_REDIS_DB", 15)))
    args = parser.parse_args()
    env = {**os.environ, "CHIRP_REDIS_DB": str(args.redis_db), "CHIRP_ENV": "prod"}
    settings = Settings(redis_db=args.redis_db)
    asyncio.run(store_ranking(settings))
    body_file = Path(f"/tmp/chirp-bench-trending-{os.getpid()}.json")
    gateway_runs: list[dict[str, float]] = []
    healthz_runs: list[dict[str, float]] = []
    bare_runs: list[dict[str, float]] = []
    try:
        for _ in range(args.runs):
            result, body, healthz = measure("gateway.asgi:app", env, args.seconds, args.connections, "/healthz")
            gateway_runs.append(result)
            healthz_runs.append(healthz or {})
            body_file.write_bytes(body)  # the ceiling answers exactly what the gateway answered
            result, same, _ = measure(
                "bench.trending:bare_app", {**env, BODY_ENV: str(body_file)}, args.seconds, args.connections
            )
            assert same == body
            bare_runs.append(result)
    finally:
        body_file.unlink(missing_ok=True)
    report: dict[str, Any] = {
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": commit(),
        "path": PATH,
        "body_bytes": len(body),
        "connections": args.connections,
        "seconds": args.seconds,
        "gateway_rps": summary([r["rps"] for r in gateway_runs]),
        "bare_starlette_rps": summary([r["rps"] for r in bare_runs]),
        "gateway_healthz_rps": summary([r["rps"] for r in healthz_runs]),
        "gateway_to_bare_ratio": round(
            statistics.median(r["rps"] for r in gateway_runs) / statistics.median(r["rps"] for r in bare_runs), 3
        ),
        "healthz_to_bare_ratio": round(
            statistics.median(r["rps"] for r in healthz_runs) / statistics.median(r["rps"] for r in bare_runs), 3
        ),
        "gateway_cpu_ms_per_request": round(statistics.median(r["cpu_ms"] for r in gateway_runs), 3),
        "healthz_cpu_ms_per_request": round(statistics.median(r["cpu_ms"] for r in healthz_runs), 3),
        "bare_cpu_ms_per_request": round(statistics.median(r["cpu_ms"] for r in bare_runs), 3),
        "gateway_latency_ms": {k: summary([r[k] for r in gateway_runs]) for k in ("p50", "p99")},
        "bare_latency_ms": {k: summary([r[k] for r in bare_runs]) for k in ("p50", "p99")},
    }
    print(f"{'figure':<24} value")
    for key, value in report.items():
        print(f"{key:<24} {value}")
    RESULTS.parent.mkdir(exist_ok=True)
    with RESULTS.open("a") as out:
        out.write(json.dumps(report) + "\n")


if __name__ == "__main__":
    main()
