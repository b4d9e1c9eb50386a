"""The names a benchmark runs under, from the isolation variables a developer exports for the tests
(`CHIRP_TOPIC_NAMESPACE`, `CHIRP_POSTGRES_TEST_DB`, `CHIRP_REDIS_DB`; `CHIRP_CONSUMER_GROUP_PREFIX` reaches the
groups through the settings), so benchmarks run by several people on one machine never share a topic, group,
database or port. Without them: the `bench-` topics, database `chirp_bench` and the given Redis database.
The topic namespace (`bench-` and the developer's) is set by each benchmark before anything imports
schemas.topics, which reads it once.
"""

from __future__ import annotations

import os
import socket


def postgres_db() -> str:
    """`<the developer's test database>_bench`, or `chirp_bench`."""
    test_db = os.environ.get("CHIRP_POSTGRES_TEST_DB", "")
    return f"{test_db}_bench" if test_db else "chirp_bench"


def redis_db(default: int) -> int:
    """The developer's Redis database (the benchmark empties it first), or the benchmark's own."""
    return int(os.environ.get("CHIRP_REDIS_DB", default))


def free_port() -> int:
    """A loopback port nothing listens on now, for the gateway a benchmark starts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
