"""A stack of its own for fault injection: a PostgreSQL cluster and a Redis on free ports, every consumer in a child
process reading topics of its own on the shared broker, and the faults themselves.

- PostgreSQL: a cluster `chirp-<port>` (ops/services derives its name and paths from the port), its app database
  moved onto a tablespace on a small tmpfs, so "the disk is full" is one `mount -o remount,size=<used>`.
- Redis: its own instance, so `CONFIG SET maxmemory` touches nobody else's.
- Kafka: the shared broker, with a topic namespace and consumer groups carrying this run's id (deleted at the end
  of the run like every scratch name).

`FaultStack.stop` undoes everything (the consumers, the cluster, the mount, Redis, the state directory) whatever
state a test left it in.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from prometheus_client.parser import text_string_to_metric_families

from chirp.settings import Settings
from ops.services import postgres, redis
from ops.services._util import privileged, run
from schemas import topics
from schemas.events import Event
from tests.scratch import scratch_id

TABLESPACE = "faults_disk"
DISK_SIZE = "64m"  # the app database (~10 MB from template1 with pg_trgm and rum) and what the tests write
METRICS = re.compile(r"http://[^:/\"\s]+:(\d+)/metrics")  # the consumers log "metrics served" with the url


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class FaultStack:
    settings: Settings
    namespace: str  # before every topic name and consumer group of this stack
    home: Path
    disk: Path  # the tmpfs mount point holding the app database
    consumers: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)
    metrics_port: int | None = None

    def __post_init__(self) -> None:
        self.log_path = self.home / "consumers.log"

    # Setup and teardown ---------------------------------------------------------------------------------------

    @classmethod
    def create(cls) -> FaultStack:
        home = Path(tempfile.mkdtemp(prefix="chirp-faults-"))
        settings = Settings(
            home=home,
            postgres_port=free_port(),
            postgres_db="chirp_faults",
            postgres_test_db="chirp_faults_spare",
            redis_port=free_port(),
            redis_db=0,
        )
        return cls(settings, f"{topics.NAMESPACE}{scratch_id()}-", home, home / "disk")

    def start(self) -> None:
        """PostgreSQL and Redis up (installed by the project's service scripts when missing), the app database on
        the small disk, the consumers running."""
        postgres.up(self.settings)
        redis.up(self.settings)
        owner = pwd.getpwnam("postgres")
        self.disk.mkdir()
        self.home.chmod(0o711)  # the postgres user reaches the mount point through it
        options = f"size={DISK_SIZE},mode=0700,uid={owner.pw_uid},gid={owner.pw_gid}"
        run(privileged(["mount", "-t", "tmpfs", "-o", options, "chirp-faults", str(self.disk)]))
        self.psql(f"CREATE TABLESPACE {TABLESPACE} LOCATION '{self.disk}'")
        self.psql(f"ALTER DATABASE {self.settings.postgres_db} SET TABLESPACE {TABLESPACE}")
        self.start_consumers()

    def start_consumers(self) -> None:
        """`chirp consume --all` on this stack, as tests/integration's `pipeline` fixture runs it."""
        s = self.settings
        env = {
            **os.environ,
            "CHIRP_POSTGRES_PORT": str(s.postgres_port),
            "CHIRP_POSTGRES_DB": s.postgres_db,
            "CHIRP_REDIS_PORT": str(s.redis_port),
            "CHIRP_REDIS_DB": str(s.redis_db),
            "CHIRP_TOPIC_NAMESPACE": self.namespace,
            "CHIRP_CONSUMER_GROUP_PREFIX": self.namespace,
        }
        cmd = [sys.executable, "-m", "ops", "consume", "--all", "--metrics-port", str(free_port())]
        with self.log_path.open("ab") as log:
            self.consumers = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        """Stop and remove everything this stack started; each step runs even when an earlier one failed."""
        steps = (self._stop_consumers, self._drop_cluster, self._unmount, lambda: redis.down(self.settings))
        for step in steps:
            with contextlib.suppress(Exception):
                step()
        shutil.rmtree(self.home, ignore_errors=True)

    def _stop_consumers(self) -> None:
        if self.consumers is None:
            return
        self.consumers.send_signal(signal.SIGTERM)
        try:
            self.consumers.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.consumers.kill()
            self.consumers.wait()

    @staticmethod
    def cluster_list() -> list[str]:
        """`pg_lsclusters`: version, name, port, status, owner, data directory, log file per line."""
        return run(["pg_lsclusters", "--no-header"]).stdout.splitlines()

    def _drop_cluster(self) -> None:
        name = postgres.cluster(self.settings)
        for line in self.cluster_list():
            cols = line.split()
            if cols[1:2] == [name]:
                run(privileged(["pg_dropcluster", "--stop", cols[0], name]))

    def _unmount(self) -> None:
        if os.path.ismount(self.disk):
            run(privileged(["umount", "--lazy", str(self.disk)]))

    # Administration -------------------------------------------------------------------------------------------

    def psql(self, sql: str, db: str = "postgres") -> str:
        """Run SQL as the cluster's superuser (peer authentication over the local socket)."""
        cmd = ["psql", "-X", "-tA", "-v", "ON_ERROR_STOP=1", "-p", str(self.settings.postgres_port), "-d", db]
        return run(privileged(["runuser", "-u", "postgres", "--", *cmd, "-c", sql]), cwd="/").stdout.strip()

    def fill_disk(self) -> None:
        """Make the database's disk full: its size becomes what it holds now, so the next page any table or index
        needs fails with "could not extend file: No space left on device" (SQLSTATE 53100)."""
        for _ in range(50):  # the consumers may write between the measure and the remount: measure again
            stat = os.statvfs(self.disk)
            used = (stat.f_blocks - stat.f_bfree) * stat.f_frsize
            remount = privileged(["mount", "-o", f"remount,size={used}", str(self.disk)])
            if subprocess.run(remount, capture_output=True, check=False).returncode == 0:
                return
        raise AssertionError("could not shrink the database's disk to its use")

    def free_disk(self) -> None:
        run(privileged(["mount", "-o", f"remount,size={DISK_SIZE}", str(self.disk)]))

    def read_only(self, on: bool) -> None:
        """Every new transaction read-only (SQLSTATE 25006 for a write), as on a standby or a full-disk guard."""
        self.psql("ALTER SYSTEM SET default_transaction_read_only = on" if on else "ALTER SYSTEM RESET ALL")
        self.psql("SELECT pg_reload_conf()")

    # Observation ----------------------------------------------------------------------------------------------

    def topic(self, topic: topics.Topic) -> str:
        """The name `topic` has on this stack."""
        return f"{self.namespace}{topic.name.removeprefix(topics.NAMESPACE)}"

    def dead_letter_topics(self, names: list[str]) -> list[str]:
        return [self.topic(topics.dead_letters(name)) for name in names]

    def log_lines(self, since: int = 0) -> list[dict[str, Any]]:
        """The consumers' JSON log lines from byte offset `since` on."""
        with self.log_path.open("rb") as log:
            log.seek(since)
            lines = log.read().splitlines()
        found = []
        for line in lines:
            with contextlib.suppress(orjson.JSONDecodeError):
                if isinstance(entry := orjson.loads(line), dict):
                    found.append(entry)
        return found

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    async def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """The consumers' Prometheus samples: (name, sorted labels) -> value."""
        if self.metrics_port is None:
            found = METRICS.search(self.log_path.read_text(errors="replace"))
            assert found, "the consumers did not say where /metrics is"
            self.metrics_port = int(found.group(1))
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5)).text
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    async def outage_gauge(self, consumer: str, reason: str) -> float | None:
        key = ("chirp_consumer_outage", (("consumer", consumer), ("reason", reason)))
        return (await self.metrics()).get(key)

    def alive(self) -> bool:
        return self.consumers is not None and self.consumers.poll() is None


def wire(event: Event) -> tuple[bytes, bytes, dict[str, str]]:
    """What `Publisher.publish` sends for `event`: key, value and headers."""
    headers = {"correlation_id": event.correlation_id, "event_type": event.type, "event_id": event.id}
    return event.key.encode(), event.model_dump_json().encode(), headers


def elapsed(since: float) -> float:
    return round(time.monotonic() - since, 2)
