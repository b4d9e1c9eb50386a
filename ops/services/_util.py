"""Small process, port and package helpers shared by the service modules."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from chirp.settings import Settings

T = TypeVar("T")

_apt_updated = False


class ServiceError(RuntimeError):
    """A service could not be installed, started or reached."""


def instance_name(base: str, settings: Settings, port_field: str) -> str:
    """The name of one service's state for these settings: `base` on the default port (the names existing machines
    already use), `base-<port>` on another, so a second stack on other ports (staging, the fault tests) keeps its
    own cluster, data, logs and pid files."""
    port = getattr(settings, port_field)
    return base if port == Settings.model_fields[port_field].default else f"{base}-{port}"


def privileged(cmd: Sequence[str]) -> list[str]:
    """Prefix a command with sudo unless we are already root."""
    return list(cmd) if os.geteuid() == 0 or not shutil.which("sudo") else ["sudo", *cmd]


def run(cmd: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a command, capture its output and raise ServiceError with it on failure."""
    proc = subprocess.run(list(cmd), capture_output=True, text=True, check=False, **kwargs)
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr).strip()
        raise ServiceError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{out}")
    return proc


def apt_install(*packages: str) -> None:
    """Install Debian packages, running `apt-get update` once per process first."""
    global _apt_updated
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if not _apt_updated:
        run(privileged(["apt-get", "update", "-q"]), env=env)
        _apt_updated = True
    run(privileged(["apt-get", "install", "-y", "-q", *packages]), env=env)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def pid_alive(pid_file: Path, marker: str) -> int | None:
    """The PID recorded in pid_file if that process still runs a command line containing marker."""
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, ValueError):
        return None
    return pid if marker in cmdline else None


def gone(pid: int) -> bool:
    """Whether pid has exited (reaping it if it is our own child)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


def stop_pid(pid: int, timeout: float) -> None:
    """Send SIGTERM, wait up to timeout seconds for the process to exit, then SIGKILL it."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not wait_for(lambda: gone(pid), timeout):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: gone(pid), 5)


def wait_for(check: Callable[[], bool], timeout: float, interval: float = 0.25) -> bool:
    """Poll check() until it returns True or timeout seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def tail(path: Path, lines: int = 30) -> str:
    """The last lines of a log file without Java stack frames, or a note that it is missing."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    kept = [line for line in text if not line.startswith(("\tat ", "\t... "))]
    return "\n".join(kept[-lines:])


def run_async(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion, in a helper thread when a loop is already running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()
