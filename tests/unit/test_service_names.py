"""A second stack on other ports keeps its own PostgreSQL cluster and state paths; the default stack's stay."""

from __future__ import annotations

from pathlib import Path

from chirp.settings import Settings
from ops.services import kafka, postgres, redis


def test_the_default_ports_keep_the_names_existing_machines_use() -> None:
    settings = Settings(home=Path("/state"))
    assert postgres.cluster(settings) == "chirp"
    assert redis._dir(settings) == Path("/state/redis")
    paths = kafka._Paths(settings)
    assert paths.root == Path("/state/kafka") / settings.kafka_version
    assert paths.libs == paths.root / "libs"


def test_other_ports_have_their_own_cluster_and_state() -> None:
    settings = Settings(home=Path("/state"), postgres_port=5533, redis_port=6380, kafka_port=9192)
    assert postgres.cluster(settings) == "chirp-5533"
    assert redis._dir(settings) == Path("/state/redis-6380")
    paths = kafka._Paths(settings)
    assert paths.root == Path("/state/kafka") / f"{settings.kafka_version}-9192"
    assert {paths.data, paths.pid, paths.conf, paths.cluster_id} <= {
        paths.root / "data",
        paths.root / "kafka.pid",
        paths.root / "server.properties",
        paths.root / "cluster.id",
    }
    assert paths.libs == Path("/state/kafka") / settings.kafka_version / "libs", "the jars are shared"
