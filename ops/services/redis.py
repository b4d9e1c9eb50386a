"""Our own Redis instance from Debian's redis-server: sessions, rate limits and the Redis read models, kept in an
append-only file so they survive a restart (every read model can also be rebuilt from the log)."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from pathlib import Path

from chirp.settings import Settings
from ops.services._util import (
    ServiceError,
    apt_install,
    instance_name,
    pid_alive,
    privileged,
    run,
    stop_pid,
    tail,
    wait_for,
)

READY_TIMEOUT_S = 15.0
MARKER = "redis-server"


def _dir(settings: Settings) -> Path:
    """Working directory holding the append-only file, the pid and log files (one per port)."""
    return settings.home / instance_name("redis", settings, "redis_port")


def ping(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether a Redis server answers PING on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _install(settings: Settings) -> None:
    """Install redis-server from Debian and stop any distro instance that grabbed our port."""
    apt_install("redis-server")
    if ping(settings.redis_host, settings.redis_port) and Path("/etc/init.d/redis-server").exists():
        with contextlib.suppress(OSError):
            subprocess.run(privileged(["service", "redis-server", "stop"]), capture_output=True, check=False)


def up(settings: Settings) -> None:
    """Start our Redis unless something already answers PING on the port."""
    t0 = time.monotonic()
    host, port = settings.redis_host, settings.redis_port
    if ping(host, port):
        print("redis: already running")
        return
    if not shutil.which("redis-server"):
        _install(settings)
    work = _dir(settings)
    work.mkdir(parents=True, exist_ok=True)
    log = work / "redis.log"
    args = ["--port", str(port), "--bind", host, "--daemonize", "yes", "--dir", str(work)]
    args += ["--pidfile", str(work / "redis.pid"), "--logfile", str(log)]
    # Sessions and the Redis read models survive a restart: an append-only file, flushed every second.
    args += ["--save", "", "--appendonly", "yes", "--appendfsync", "everysec"]
    run(["redis-server", *args])
    if not wait_for(lambda: ping(host, port), READY_TIMEOUT_S):
        raise ServiceError(f"redis not answering on {host}:{port}; last log lines:\n{tail(log)}")
    print(f"redis: started in {time.monotonic() - t0:.1f}s")


def down(settings: Settings) -> None:
    """Stop the Redis instance we started."""
    pid = pid_alive(_dir(settings) / "redis.pid", MARKER)
    if pid is None:
        print("redis: not running (nothing we started)")
        return
    stop_pid(pid, timeout=15)
    print("redis: stopped")


def status(settings: Settings) -> bool:
    """Whether Redis answers PING on its port."""
    return ping(settings.redis_host, settings.redis_port)


def pid(settings: Settings) -> int | None:
    """PID of the Redis instance we started, if it runs."""
    return pid_alive(_dir(settings) / "redis.pid", MARKER)
