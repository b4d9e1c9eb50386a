"""Every operator command answers `--help` with exit 0, through `chirp` itself once registered there."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from chirp.settings import Settings
from ops import _kafka
from ops.cli import ops_app
from producers.broker import Publisher
from tests.integration import replay_probe as probe

COMMANDS = [
    [],
    ["topics"],
    ["lag"],
    ["replay"],
    ["rebuild"],
    ["seed"],
    ["docs"],
    ["dlq"],
    ["dlq", "list"],
    ["dlq", "show"],
    ["dlq", "retry"],
    ["dlq", "drop"],
]


def _apps() -> list[typer.Typer]:
    from ops.main import app

    registered = {c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands}
    return [ops_app, app] if "lag" in registered else [ops_app]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a) or "ops")
def test_help_exits_0(args: list[str]) -> None:
    for app in _apps():
        result = CliRunner().invoke(app, [*args, "--help"])
        assert result.exit_code == 0, result.output
        assert "Usage" in result.output


def test_bad_usage_exits_2() -> None:
    assert CliRunner().invoke(ops_app, ["rebuild"]).exit_code == 2
    assert CliRunner().invoke(ops_app, ["replay"]).exit_code == 2
    assert CliRunner().invoke(ops_app, ["seed", "--users", "0", "--posts", "1"]).exit_code == 2


@pytest.mark.parametrize("args", [["topics"], ["lag"], ["dlq", "list"]], ids=" ".join)
def test_unreachable_kafka_exits_3(args: list[str]) -> None:
    result = CliRunner().invoke(ops_app, args, env={"CHIRP_KAFKA_PORT": "1"})
    assert result.exit_code == 3, result.output


MISTYPED = [
    ["consume", "mentionz"],
    ["consume", "runtime"],  # a module under consumers/ that is no consumer
    ["consume", "tests.nowhere.probe"],
    ["consume", "posts", "users", "--group", "mine"],
    ["consume", "--all", "--group", "mine"],
    ["replay", "mentionz"],
    ["replay", "posts", "mentionz", "--dry-run"],
    ["lag", "--group", "mentionz"],
    ["dlq", "list", "mentionz"],
    ["dlq", "show", "mentionz"],
    ["dlq", "retry", "mentionz"],
    ["dlq", "drop", "mentionz"],
]


@pytest.mark.parametrize("args", MISTYPED, ids=" ".join)
def test_a_mistyped_consumer_or_group_is_one_line_and_exit_2(args: list[str]) -> None:
    from ops.main import app

    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("chirp: "), result.stderr
    assert result.stdout == ""


def test_a_dry_run_refuses_a_consumer_without_a_read_model_as_a_replay_does() -> None:
    for args in (["replay", "preparse"], ["replay", "preparse", "--dry-run"]):
        result = CliRunner().invoke(ops_app, args)
        assert result.exit_code == 1 and "preparse owns no read model" in result.stderr, result.output


async def test_a_dry_run_shows_each_partitions_offsets_the_tables_and_the_keys(
    settings: Settings, publisher: Publisher
) -> None:
    group, table, topic = await probe.fresh(settings, "dry", partitions=3)
    await probe.send(publisher, topic, probe.posts(30))
    env = {**os.environ, "CHIRP_RP_GROUP": group, "CHIRP_RP_TOPIC": topic.name, "CHIRP_RP_TABLE": table}
    cmd = [sys.executable, "-m", "ops", "replay", "tests.integration.replay_probe", "--dry-run"]
    shown = await asyncio.to_thread(
        subprocess.run, cmd, env={**env, "COLUMNS": "200"}, capture_output=True, text=True, check=False
    )
    assert shown.returncode == 0, shown.stderr
    async with _kafka.reader(settings) as kafka:
        ends = await kafka.end_offsets(await _kafka.partitions(kafka, [topic.name]))
    assert sum(ends.values()) == 30
    for tp, end in ends.items():
        assert re.search(rf"{tp.topic}/{tp.partition}\s*│\s*0\s*│\s*{end}\s*│\s*{end}\s*│", shown.stdout), shown.stdout
    assert re.search(r"all\s*│\s*│\s*│\s*30\s*│", shown.stdout), shown.stdout
    assert f"tables: {table}" in shown.stdout and f"redis keys: rp:{group}:*" in shown.stdout
    async with _kafka.admin(settings) as admin:
        assert not [g for g in await _kafka.groups(admin) if g.startswith(settings.group(group))], "nothing replayed"
