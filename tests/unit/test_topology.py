"""The deployed topology matches the code: compose.yaml runs every consumer, and the architecture's topic table
names, for each topic, exactly the consumers that handle it."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from consumers.runtime import all_consumers
from schemas import topics

ROOT = Path(__file__).resolve().parents[2]


def test_compose_runs_every_consumer_and_only_the_stores_the_app_uses() -> None:
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    commands = [s.get("command") for s in services.values()]
    missing = [c.name for c in all_consumers() if ["chirp", "consume", c.name] not in commands]
    assert missing == [], f"compose.yaml runs no container for {missing}"
    default = {name for name, s in services.items() if not s.get("profiles")}
    assert "arangodb" not in default, "the app runs on PostgreSQL by default: start ArangoDB only under a profile"
    environment = yaml.safe_load((ROOT / "compose.yaml").read_text())["x-app"]["environment"]
    assert environment["CHIRP_STORE"] == "${CHIRP_STORE:-postgres}", "without ArangoDB the posts live in PostgreSQL"


def test_the_architectures_topic_table_names_every_consumer_of_each_topic() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    table = dict(re.findall(r"^\| `([a-z-]+)` \| [^|]+ \| [^|]+ \| ([^|]+) \|$", text, flags=re.M))
    for topic in topics.ALL:
        name = topic.name.removeprefix(topics.NAMESPACE)
        handling = {c.name for c in all_consumers() if topic.name in c.handlers}
        documented = {n.strip() for n in table.get(name, "").split(",")} - {""}
        assert documented == handling, f"{name}: docs/architecture.md says {documented}, the code {handling}"


def test_the_cluster_profile_runs_three_brokers_and_two_processes_per_consumer() -> None:
    """`docker compose --profile cluster`: three KRaft nodes that name each other as voters, and every consumer
    (one process of suggestions, which holds a lease) twice on them; nothing of it starts without the profile."""
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    profile = {name: s for name, s in services.items() if "cluster" in s.get("profiles", [])}
    brokers = {name: s for name, s in profile.items() if s.get("image", "").startswith("apache/kafka")}
    assert sorted(brokers) == ["cluster-kafka-1", "cluster-kafka-2", "cluster-kafka-3"]
    voters = {s["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"] for s in brokers.values()}
    assert voters == {"1@cluster-kafka-1:9093,2@cluster-kafka-2:9093,3@cluster-kafka-3:9093"}
    assert sorted(s["environment"]["KAFKA_NODE_ID"] for s in brokers.values()) == [1, 2, 3]
    assert len({s["environment"]["CLUSTER_ID"] for s in brokers.values()}) == 1
    assert all(s["environment"]["KAFKA_MIN_INSYNC_REPLICAS"] == 2 for s in brokers.values())
    app = {name: s for name, s in profile.items() if name not in brokers}
    bootstrap = {s["environment"]["CHIRP_KAFKA_BOOTSTRAP"] for s in app.values()}
    assert bootstrap == {"cluster-kafka-1:9092,cluster-kafka-2:9092,cluster-kafka-3:9092"}
    processes = {
        s["command"][2]: s["deploy"]["replicas"] for s in app.values() if s["command"][:2] == ["chirp", "consume"]
    }
    assert processes == {c.name: 1 if c.name == "suggestions" else 2 for c in all_consumers()}
    assert any(s["command"][:2] == ["chirp", "gateway"] for s in app.values())
