"""The app unchanged on a Redis Cluster: three masters on loopback of the tests' own (`chirp services up
--redis-cluster` on free ports, state in a temp dir), and the Redis-facing integration tests run against it with
`CHIRP_REDIS_CLUSTER=1`. A script or multi-key command whose keys are not in one slot fails there (CROSSSLOT),
as does a script that reads a key it was not given."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from chirp.settings import Settings
from ops.services import redis_cluster
from tests.cluster.stack import free_port_block

# The timelines and trending tests, and the other read models, sessions, rate limits and live updates on Redis.
SUITE = [
    "tests/integration/test_timeline.py",
    "tests/integration/test_timeline_reposts.py",
    "tests/integration/test_trending.py",
    "tests/integration/test_relations.py",
    "tests/integration/test_relations_reads.py",
    "tests/integration/test_notifications.py",
    "tests/integration/test_suggestions.py",
    "tests/integration/test_sessions.py",
    "tests/integration/test_ratelimit.py",
    "tests/integration/test_interaction_cache.py",
    "tests/integration/test_sse.py",
    "tests/integration/test_read_path_auth.py",
]
# Tests of the single server's round trips: its NOSCRIPT reload (on a cluster the app's pipelines send scripts as
# EVAL, chirp/redis_client.py, and redis-py refuses the PING that test pipelines), the read path's own connections
# (CLIENT KILL reaches one node of a cluster; a plain client on one node is MOVED for most keys), and the count of
# round trips a page takes (a cluster client has no single connection pool to count on).
NOT_ON_A_CLUSTER = [
    "tests/integration/test_read_path_auth.py::test_a_script_redis_does_not_hold_yet_is_loaded_and_the_pipeline_sent_again",
    "tests/integration/test_read_path_auth.py::test_a_closed_or_interrupted_connection_leaves_no_wrong_answer",
    "tests/integration/test_read_path_auth.py::test_a_reply_later_than_the_socket_timeout_fails_as_redis_times_out",
    "tests/integration/test_read_path_auth.py::test_concurrent_round_trips_share_one_write_and_each_gets_its_own_replies",
    "tests/integration/test_notifications.py::test_a_page_reads_its_items_in_the_round_trip_that_checks_the_viewer",
]


@pytest.fixture(scope="module")
def redis_nodes(settings: Settings) -> Iterator[Settings]:
    """A three-master cluster on free ports, stopped and deleted at the end."""
    home = Path(tempfile.mkdtemp(prefix="chirp-redis-cluster-"))
    on = settings.model_copy(
        update={
            "home": home,
            "redis_cluster": True,
            "redis_cluster_port": free_port_block(redis_cluster.MASTERS, highest=55535, bus_offset=10000),
        }
    )
    try:
        redis_cluster.up(on)
        redis_cluster.up(on)  # a second start finds it formed
        yield on
    finally:
        redis_cluster.down(on)
        shutil.rmtree(home, ignore_errors=True)


def test_three_masters_serve_every_slot(redis_nodes: Settings) -> None:
    client = redis.RedisCluster(host=redis_nodes.redis_host, port=redis_nodes.redis_cluster_port)
    try:
        assert len(client.get_primaries()) == 3
        assert int(client.cluster_info()["cluster_slots_ok"]) == 16384
    finally:
        client.close()
    node = redis.Redis(host=redis_nodes.redis_host, port=redis_nodes.redis_cluster_port)
    with node, pytest.raises(redis.ResponseError, match="same slot"):  # CROSSSLOT: two users' keys in one script
        node.eval("return redis.call('GET', KEYS[2])", 2, "chirp:rel:hidden:{a}", "chirp:rel:hidden:{b}")


def test_redis_facing_integration_tests_pass_on_the_cluster(redis_nodes: Settings, tmp_path: Path) -> None:
    """The same tests as `make test`, with every process of the app (the in-process gateway, the consumers' child
    process, the tests' own clients) on the cluster; their own database, topics and groups."""
    env = {
        **os.environ,
        "CHIRP_REDIS_CLUSTER": "1",
        "CHIRP_REDIS_CLUSTER_PORT": str(redis_nodes.redis_cluster_port),
        "CHIRP_POSTGRES_TEST_DB": f"{os.environ.get('CHIRP_POSTGRES_TEST_DB', 'chirp_test')}_rc",
        "CHIRP_TOPIC_NAMESPACE": f"{os.environ.get('CHIRP_TOPIC_NAMESPACE', 'test-')}rc-",
        "CHIRP_CONSUMER_GROUP_PREFIX": f"{os.environ.get('CHIRP_CONSUMER_GROUP_PREFIX', 'test-')}rc-",
    }
    log = tmp_path / "pytest.log"
    deselected = [arg for test in NOT_ON_A_CLUSTER for arg in ("--deselect", test)]
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SUITE, *deselected]
    with log.open("wb") as out:
        done = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=1200, check=False)
    text = log.read_text(errors="replace")
    print(text[-3000:])
    assert done.returncode == 0, text[-6000:]
