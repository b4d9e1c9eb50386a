"""End-to-end fixtures: the gateway served by uvicorn in a child process, the consumers, a local fake GitHub,
and Debian's Chromium driven by Playwright (installed with apt when missing; never a browser download)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, async_playwright

from chirp.settings import Settings
from ops import og_image
from ops.services._util import apt_install
from tests.fakes.github import FakeGitHub

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
AXE_VERSION = "4.14.1"
ROOT = Path(__file__).resolve().parents[2]


def ensure_chromium() -> Path:
    """Debian's Chromium, installed with apt the first time (CI machines start fresh)."""
    if not CHROMIUM.exists():
        apt_install("chromium")
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing after `apt-get install chromium`")
    return CHROMIUM


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes], timeout: float) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@dataclass(frozen=True)
class Site:
    url: str
    github: FakeGitHub


@pytest.fixture(scope="package")
def fake_github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as fake:
        yield fake


@pytest.fixture(scope="package")
def consumers() -> Iterator[subprocess.Popen[bytes]]:
    """Every consumer in one child process, for the e2e tests only (stopped before other packages start theirs)."""
    cmd = [sys.executable, "-m", "ops", "consume", "--all", "--metrics-port", "0"]
    proc = subprocess.Popen(cmd, env={**os.environ}, cwd=ROOT)
    yield proc
    _stop(proc, 60)


@pytest.fixture(scope="package")
def axe(settings: Settings) -> str:
    """axe-core's script, installed from npm once under the state directory (outside the repo; Debian's `npm`)."""
    prefix = settings.home / "axe"
    installed = prefix / "node_modules" / "axe-core"
    if (
        not (installed / "package.json").exists()
        or json.loads((installed / "package.json").read_text())["version"] != AXE_VERSION
    ):
        if shutil.which("npm") is None:
            apt_install("npm")
        cmd = ["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund", f"axe-core@{AXE_VERSION}"]
        subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    return (installed / "axe.min.js").read_text()


@pytest.fixture(scope="package")
def site(fake_github: FakeGitHub, consumers: subprocess.Popen[bytes]) -> Iterator[Site]:
    """The gateway under uvicorn on a free port of 127.0.0.1, in dev mode, logging in through the fake GitHub."""
    og_image.build()  # the PNG link previews fetch, built from its SVG as `make run` does
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "CHIRP_ENV": "dev", "CHIRP_PORT": str(port), "CHIRP_PUBLIC_URL": url}
    env.update({f"CHIRP_{k.upper()}": str(v) for k, v in fake_github.settings_overrides().items()})
    cmd = [
        sys.executable, "-m", "uvicorn", "gateway.asgi:app", "--host", "127.0.0.1", "--port", str(port),
        "--timeout-graceful-shutdown", "3", "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT)
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            pytest.fail(f"the gateway exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            _stop(proc, 10)
            pytest.fail("the gateway did not answer /healthz within 60 s")
        time.sleep(0.1)
    yield Site(url, fake_github)
    _stop(proc, 15)


@pytest.fixture(scope="package")
async def browser() -> AsyncIterator[Browser]:
    executable = ensure_chromium()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS, headless=True)
        yield launched
        await launched.close()


@pytest.fixture(scope="package")
def screenshots() -> Path:
    if SCREENSHOTS.exists():
        shutil.rmtree(SCREENSHOTS)
    SCREENSHOTS.mkdir(parents=True)
    return SCREENSHOTS
