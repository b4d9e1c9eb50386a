"""`ops.services.up` is idempotent: a second call reuses the running services and starts nothing."""

from __future__ import annotations

import os
import subprocess

import pytest

from chirp.settings import Settings
from ops import services
from ops.services import kafka, redis


def _postmaster_started(settings: Settings) -> str:
    env = {**os.environ, "PGPASSWORD": settings.postgres_password.get_secret_value()}
    cmd = ["psql", "-X", "-w", "-h", settings.postgres_host, "-p", str(settings.postgres_port)]
    cmd += [
        "-U",
        settings.postgres_user,
        "-d",
        settings.postgres_db,
        "-tAc",
        "SELECT pg_postmaster_start_time()",
    ]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout.strip()


def test_up_twice_starts_nothing_the_second_time(capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings()
    services.up(settings)
    assert services.status(settings) == {"kafka": True, "redis": True, "postgres": True}
    before = (kafka.pid(settings), redis.pid(settings), _postmaster_started(settings))
    capsys.readouterr()

    services.up(settings)

    out = capsys.readouterr().out.splitlines()
    assert out == ["postgres: already running", "redis: already running", "kafka: already running"]
    assert (kafka.pid(settings), redis.pid(settings), _postmaster_started(settings)) == before
    assert services.status(settings) == {"kafka": True, "redis": True, "postgres": True}
    # Services stay up on purpose: the rest of the integration suite uses them.
