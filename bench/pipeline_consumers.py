"""Every consumer of `chirp consume --all`, in one process, under `bench-` group ids.

    python -m bench.pipeline_consumers

Same runtime, same handlers, same process layout as `chirp consume --all`; only the group ids differ, so a
benchmark never shares partitions with a pipeline that tests or the app run on this machine at the same time
(their groups would otherwise take half the benchmark's events into another database, and vice versa).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from chirp.logging import configure
from chirp.settings import Settings
from consumers.runtime import Consumer, all_consumers, build_app

PREFIX = "bench-"


def bench_consumers() -> list[Consumer]:
    """Every product consumer, renamed `bench-<name>` (the group id and the dead-letter topic follow the name)."""
    return [replace(consumer, name=PREFIX + consumer.name) for consumer in all_consumers()]


def main() -> None:
    configure(process="bench-consumers", level="WARNING")
    asyncio.run(build_app(Settings(), bench_consumers()).run())


if __name__ == "__main__":
    main()
