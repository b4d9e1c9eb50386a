"""Every consumer of `chirp consume --all`, in one process, under `bench-` group ids.

    python -m bench.pipeline_consumers [preparse,posts,...]

Same runtime, same handlers, same process layout as `chirp consume --all`; only the group ids differ, so a
benchmark never shares partitions with a pipeline that tests or the app run on this machine at the same time
(their groups would otherwise take half the benchmark's events into another database, and vice versa).
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import replace

from chirp.logging import configure
from chirp.settings import Settings
from consumers.runtime import Consumer, all_consumers, build_app

PREFIX = "bench-"


def bench_consumers(only: str = "") -> list[Consumer]:
    """Every product consumer (or those named in `only`, comma-separated), renamed `bench-<name>`."""
    wanted = set(filter(None, only.split(",")))
    return [replace(c, name=PREFIX + c.name) for c in all_consumers() if not wanted or c.name in wanted]


def main() -> None:
    configure(process="bench-consumers", level="WARNING")
    only = sys.argv[1] if len(sys.argv) > 1 else ""
    asyncio.run(build_app(Settings(), bench_consumers(only)).run())


if __name__ == "__main__":
    main()
