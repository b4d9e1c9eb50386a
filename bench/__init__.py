"""Benchmarks that print figures; each appends JSON lines to bench/results/ naming the commit measured."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import asyncpg

from chirp.settings import Settings


def commit() -> str:
    """The checkout's commit, with `-dirty` when files differ from it (figures of uncommitted code say so)."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False).stdout.strip()

    dirty = git("status", "--porcelain", "--untracked-files=no")
    return git("rev-parse", "--short=12", "HEAD") + ("-dirty" if dirty else "")


def redis_db(default: int) -> int:
    """The benchmark's Redis database (flushed by it): the run's isolated one (`CHIRP_REDIS_DB`) when set."""
    return int(os.environ.get("CHIRP_REDIS_DB", default))


def pcts(values: list[float], digits: int = 2) -> dict[str, float]:
    """n, p50, p95, p99 and max of `values` (seconds), in milliseconds; {} when there are none."""
    values = sorted(values)
    if not values:
        return {}

    def at(q: float) -> float:
        return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, digits)

    return {"n": len(values), "p50_ms": at(0.5), "p95_ms": at(0.95), "p99_ms": at(0.99), "max_ms": at(1.0)}


async def ensure_database(settings: Settings) -> None:
    """Create the settings' database when it does not exist yet (migrations are applied on connecting)."""
    conn = await asyncpg.connect(settings.postgres_dsn("postgres"))
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", settings.postgres_db):
            await conn.execute(f'CREATE DATABASE "{settings.postgres_db}" OWNER "{settings.postgres_user}"')
    finally:
        await conn.close()


def record(results: Path, result: dict[str, Any]) -> None:
    """Print `result` as a table and append it, with the commit measured, to the JSON lines file `results`."""
    result = {"commit": commit(), **result}
    print(f"{'figure':<28} value")
    for key, value in result.items():
        print(f"{key:<28} {value}")
    results.parent.mkdir(exist_ok=True)
    with results.open("a") as out:
        out.write(json.dumps(result) + "\n")
