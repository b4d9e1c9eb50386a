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


def test_a_cluster_keeps_its_nodes_apart_from_the_single_broker() -> None:
    settings = Settings(home=Path("/state"), kafka_brokers=3)
    nodes = kafka.nodes(settings)
    single = kafka._Paths(Settings(home=Path("/state")))
    assert [n.root for n in nodes] == [
        Path("/state/kafka") / f"{settings.kafka_version}-x3" / f"node-{i}" for i in range(3)
    ]
    assert single.data not in {n.data for n in nodes}
    assert [(n.port, n.controller_port) for n in nodes] == [(9092, 9093), (9094, 9095), (9096, 9097)]
    assert settings.bootstrap_servers == "127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096"
    assert len({n.cluster_id for n in nodes}) == 1, "one cluster id for every node"


def test_a_three_broker_cluster_replicates_three_times_with_two_in_sync(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, kafka_brokers=3, kafka_port=19092, kafka_controller_port=19093)
    node = kafka.nodes(settings)[2]
    kafka._write_config(settings, node)
    conf = dict(line.split("=", 1) for line in node.conf.read_text().splitlines() if "=" in line and line[0] != "#")
    assert conf["node.id"] == "3"
    assert conf["controller.quorum.voters"] == "1@127.0.0.1:19093,2@127.0.0.1:19095,3@127.0.0.1:19097"
    assert conf["listeners"] == "PLAINTEXT://127.0.0.1:19096,CONTROLLER://127.0.0.1:19097"
    assert (conf["default.replication.factor"], conf["min.insync.replicas"]) == ("3", "2")
    assert (conf["offsets.topic.replication.factor"], conf["transaction.state.log.min.isr"]) == ("3", "2")
    one = Settings(home=tmp_path / "one")
    kafka._write_config(one, kafka._Paths(one))
    assert "min.insync.replicas=1" in kafka._Paths(one).conf.read_text()
