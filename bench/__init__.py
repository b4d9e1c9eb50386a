"""Benchmarks that print figures; each appends JSON lines to bench/results/ naming the commit measured."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


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
