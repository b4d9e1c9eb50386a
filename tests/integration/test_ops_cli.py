"""Every operator command answers `--help` with exit 0, through `chirp` itself once registered there."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from chirp.ops.cli import ops_app

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
    from chirp.cli import app

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
