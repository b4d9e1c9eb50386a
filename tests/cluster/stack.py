"""A Kafka cluster of the tests' own (`chirp services up --brokers 3` on free ports, data under a temp dir), and the
app's processes on it: gateways (`chirp gateway --workers N`) and consumers (`chirp consume ...`), each a child
process with the cluster in its environment. PostgreSQL and Redis are the shared ones, with the run's isolation
database and Redis database; the shared single broker is never touched.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from chirp.settings import Settings
from ops.services import kafka
from tests.integration.faults import free_port, wait_port

BROKERS = 3


def free_port_block(size: int, *, highest: int = 65535, bus_offset: int = 0) -> int:
    """The first of `size` consecutive ports nothing listens on, the block ending at or below `highest`; with
    `bus_offset`, the ports that far above each are free too (a Redis Cluster node's bus port is its port + 10000,
    and Redis refuses a port above 55535)."""
    for _ in range(200):
        base = free_port() if highest == 65535 else random.randint(20000, highest - size + 1)
        if base + size - 1 > highest:
            continue
        wanted = [p + offset for p in range(base, base + size) for offset in {0, bus_offset}]
        if all(_bindable(port) for port in wanted):
            return base
    raise AssertionError(f"no {size} consecutive free ports")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass
class Cluster:
    settings: Settings
    home: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @classmethod
    def create(cls, base: Settings) -> Cluster:
        """Settings and a state directory for a cluster on free ports (`up` starts it)."""
        home = Path(tempfile.mkdtemp(prefix="chirp-cluster-"))
        port = free_port_block(2 * BROKERS)
        settings = base.model_copy(
            update={
                "home": home,
                "kafka_port": port,
                "kafka_controller_port": port + 1,
                "kafka_brokers": BROKERS,
                "kafka_bootstrap": "",
            }
        )
        settings.__dict__.pop("bootstrap_servers", None)  # a cached property of the copied settings
        jars = home / "kafka" / settings.kafka_version
        jars.mkdir(parents=True)
        shared = base.home / "kafka" / base.kafka_version
        if (shared / "libs.complete").exists():  # the jars Maven already resolved
            (jars / "libs").symlink_to(shared / "libs")
            (jars / "libs.complete").symlink_to(shared / "libs.complete")
        return cls(settings, home)

    def up(self) -> None:
        kafka.up(self.settings)

    @property
    def env(self) -> dict[str, str]:
        """The environment of a process of the app on this cluster."""
        s = self.settings
        return {
            **os.environ,
            "CHIRP_HOME": str(self.home),
            "CHIRP_KAFKA_PORT": str(s.kafka_port),
            "CHIRP_KAFKA_CONTROLLER_PORT": str(s.kafka_controller_port),
            "CHIRP_KAFKA_BROKERS": str(BROKERS),
            "CHIRP_KAFKA_BOOTSTRAP": "",
        }

    def kill_broker(self, node: int) -> None:
        """SIGKILL one node: no controlled shutdown, as when a machine dies."""
        pid = kafka.pid(self.settings, node)
        assert pid is not None, f"node {node} is not running"
        os.kill(pid, signal.SIGKILL)
        assert _wait(lambda: kafka.pid(self.settings, node) is None, 10), f"node {node} still runs"

    def restart_brokers(self) -> None:
        """`chirp services up` again: it starts the nodes that are not running and waits for the whole cluster."""
        kafka.up(self.settings)

    # The app's processes --------------------------------------------------------------------------------------

    def spawn(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "ops", *args],
                env={**self.env, **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def consume(self, names: list[str], log: Path) -> subprocess.Popen[bytes]:
        return self.spawn(["consume", *names, "--metrics-port", "0"], log)

    def gateway(self, workers: int, log: Path, env: dict[str, str] | None = None) -> str:
        """`chirp gateway --workers N` on a free port; its URL once it answers /healthz."""
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {"CHIRP_PORT": str(port), "CHIRP_PUBLIC_URL": url, **(env or {})}
        self.spawn(["gateway", "--workers", str(workers)], log, env)
        wait_port(port, timeout=90)
        assert _wait(lambda: _answers(url), 60), f"gateway on {url} does not answer; log: {log}"
        return url

    @staticmethod
    def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def stop(self) -> None:
        """Stop every process started here, then every node (SIGKILL: the data goes with the temp dir)."""
        for proc in self.procs:
            if proc.poll() is None:
                self.stop_process(proc)
        for node in range(BROKERS):
            pid = kafka.pid(self.settings, node)
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.home, ignore_errors=True)


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _wait(check: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False
