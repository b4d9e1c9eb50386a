"""docs/adding-a-consumer.md followed as written, beside the app's consumers on the same broker: the consumer runs
in a group of its own (never the app's), tokens come from the guide's dev login, the notification arrives through
the API, and `chirp lag` / `chirp dlq list` answer for it. (`chirp replay` has tests of its own.)"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from chirp.settings import Settings
from ops import _kafka
from ops.docs import DOCS_DIR
from ops.lag import measure
from tests.conftest import eventually
from tests.integration.helpers import unique_handle
from tests.integration.test_gateway_health import free_port
from tests.scratch import scratch_id

GUIDE = DOCS_DIR / "adding-a-consumer.md"
DOCUMENTED_URL = "http://127.0.0.1:8000"
pytestmark = pytest.mark.usefixtures("pipeline")  # the app's consumers, in the app's (test) groups


def sh_block(containing: str) -> list[str]:
    """The commands of the guide's shell block that contains `containing`: continuations joined, comments gone."""
    blocks = [b for b in re.findall(r"```sh\n(.*?)```", GUIDE.read_text(), flags=re.S) if containing in b]
    assert blocks, f"the guide shows no shell block with {containing!r}"
    joined = blocks[0].replace("\\\n", " ")
    lines = (re.split(r"\s{2,}# ", line)[0].strip() for line in joined.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def env_for(user: str) -> dict[str, str]:
    """The environment of a shell in which `chirp` is this checkout's (as after `make install`)."""
    return {**os.environ, "USER": user, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}


def sh(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def gateway_url() -> Iterator[str]:
    """`chirp gateway` on a free port in dev mode (what `make run` starts on 8000)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "CHIRP_ENV": "dev", "CHIRP_PORT": str(port), "CHIRP_PUBLIC_URL": url}
    proc = subprocess.Popen([sys.executable, "-m", "ops", "gateway"], env=env)
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, f"the gateway exited with {proc.returncode}"
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the gateway did not answer /healthz within 60 s"
        time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


async def members(settings: Settings, group: str) -> int:
    async with _kafka.admin(settings) as admin:
        state = (await _kafka.group_states(admin, [group])).get(group)
    return state.members if state else 0


@dataclass
class Run:
    """The guide's section 5 commands, and its consumer running in a shell where $USER is `user`."""

    commands: list[str]
    user: str
    env: dict[str, str]
    proc: subprocess.Popen[bytes]

    def command(self, start: str) -> str:
        return next(c for c in self.commands if c.startswith(start))


@pytest.fixture
def guide_run() -> Iterator[Run]:
    user = scratch_id()  # $USER in the guide: the group `<user>-mentions` is this run's scratch
    env = env_for(user)
    commands = sh_block("chirp consume mentions")
    consume = next(c for c in commands if c.startswith("chirp consume mentions"))
    proc = subprocess.Popen(["bash", "-c", f"exec {consume} --metrics-port 0"], env=env)
    yield Run(commands, user, env, proc)
    proc.terminate()
    proc.wait(timeout=60)


async def test_the_guide_runs_its_consumer_beside_the_app_and_shows_its_notifications(
    settings: Settings, gateway_url: str, guide_run: Run
) -> None:
    app_group, own_group = settings.group("mentions"), f"{guide_run.user}-mentions"
    env, proc, consume = guide_run.env, guide_run.proc, guide_run.command("chirp consume")
    reader, writer = unique_handle("bob"), unique_handle("ann")
    steps = [
        re.sub(r"\bann\b", writer, re.sub(r"\bbob\b", reader, line)).replace(DOCUMENTED_URL, gateway_url)
        for line in sh_block("/auth/dev-login")
    ]
    *setup, read = steps
    done = await asyncio.to_thread(sh, "\n".join([*setup, 'printf "\\nTOKEN=%s\\n" "$TOKEN"']), env)
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip().splitlines()[-1].removeprefix("TOKEN=")
    assert token, done.stdout

    async def notifications() -> list[dict[str, object]]:
        shown = await asyncio.to_thread(sh, read, {**env, "TOKEN": token})
        assert shown.returncode == 0, shown.stderr
        return json.loads(shown.stdout)["items"]

    found = await eventually(notifications, timeout=60)
    assert found[0]["text"] == f"hi @{reader}" and found[0]["author"]["handle"] == writer  # type: ignore[index]

    async def caught_up() -> bool:
        assert proc.poll() is None, f"`{consume}` exited with {proc.returncode}"
        try:
            rows = await measure(settings, [own_group])
        except _kafka.UnknownName:  # not joined yet
            return False
        return bool(rows) and sum(r.lag for r in rows) == 0 and sum(r.committed for r in rows) > 0

    await eventually(caught_up, timeout=60)
    assert await members(settings, own_group) == 1
    assert await members(settings, app_group) <= 1, "the guide's consumer must not join the app's group"
    shown = await asyncio.to_thread(sh, f"COLUMNS=200 {guide_run.command('chirp lag')}", env)
    assert shown.returncode == 0 and own_group in shown.stdout and app_group not in shown.stdout, shown
    assert (await asyncio.to_thread(sh, guide_run.command("chirp dlq list"), env)).returncode == 0
