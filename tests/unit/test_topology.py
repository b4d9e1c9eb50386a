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
