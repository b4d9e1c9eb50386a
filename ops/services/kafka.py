"""Single-node KRaft Kafka built from Maven Central jars and run as a detached JVM under `settings.home`."""

from __future__ import annotations

import base64
import shutil
import subprocess
import time
import uuid
from importlib.resources import files
from string import Template

from chirp.settings import Settings
from ops.services._util import (
    ServiceError,
    apt_install,
    gone,
    instance_name,
    pid_alive,
    port_open,
    run,
    run_async,
    stop_pid,
    tail,
    wait_for,
)

READY_TIMEOUT_S = 120.0
HEAP = "-Xmx512m"
MAIN_CLASS = "kafka.Kafka"


class _Paths:
    """Where one Kafka version keeps its jars (shared), and one broker its config, data and logs (one per port)."""

    def __init__(self, settings: Settings) -> None:
        jars = settings.home / "kafka" / settings.kafka_version
        self.libs = jars / "libs"
        self.libs_ok = jars / "libs.complete"
        self.root = settings.home / "kafka" / instance_name(settings.kafka_version, settings, "kafka_port")
        self.data = self.root / "data"
        self.logs = self.root / "logs"
        self.conf = self.root / "server.properties"
        self.log4j = self.root / "log4j2.properties"
        self.cluster_id = self.root / "cluster.id"
        self.pid = self.root / "kafka.pid"
        self.out = self.logs / "kafka.out"


def _resource(name: str) -> str:
    """Text of a data file shipped in ops/services/kafka/."""
    return (files("ops.services") / "kafka" / name).read_text()


def _ensure_tools() -> None:
    """Install a JDK and Maven from Debian when they are missing."""
    missing = [pkg for tool, pkg in (("java", "openjdk-17-jre-headless"), ("mvn", "maven")) if not shutil.which(tool)]
    if missing:
        apt_install(*missing)


def _fetch_libs(settings: Settings, p: _Paths) -> None:
    """Copy the broker's runtime jars from Maven Central into libs/ unless a complete copy exists."""
    if p.libs_ok.exists() and any(p.libs.glob("kafka_2.13-*.jar")):
        return
    shutil.rmtree(p.libs, ignore_errors=True)
    jars = p.libs.parent
    jars.mkdir(parents=True, exist_ok=True)
    pom = jars / "pom.xml"
    pom.write_text(_resource("pom.xml"))
    cmd = ["mvn", "-B", "-q", "-f", str(pom), "dependency:copy-dependencies", "-DincludeScope=runtime"]
    run([*cmd, f"-DoutputDirectory={p.libs}", f"-Dkafka.version={settings.kafka_version}"], cwd=jars)
    p.libs_ok.write_text(f"{len(list(p.libs.glob('*.jar')))} jars\n")


def _java(p: _Paths, *args: str) -> list[str]:
    """A java command line with our classpath and logging configuration."""
    props = [f"-Dlog4j2.configurationFile={p.log4j}", f"-Dkafka.logs.dir={p.logs}"]
    return ["java", HEAP, "-Djava.awt.headless=true", *props, "-cp", f"{p.libs}/*", *args]


def _write_config(settings: Settings, p: _Paths) -> None:
    """Render server.properties and log4j2.properties for this settings object."""
    p.logs.mkdir(parents=True, exist_ok=True)
    values = {
        "host": settings.kafka_host,
        "port": settings.kafka_port,
        "controller_port": settings.kafka_controller_port,
        "data_dir": p.data,
    }
    p.conf.write_text(Template(_resource("server.properties")).substitute(values))
    p.log4j.write_text(_resource("log4j2.properties"))


def _cluster_id(p: _Paths) -> str:
    """The stored cluster id, generating a Kafka-style base64url UUID the first time."""
    if p.cluster_id.exists():
        return p.cluster_id.read_text().strip()
    cid = "-"
    while cid.startswith("-"):
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    p.cluster_id.write_text(cid + "\n")
    return cid


def _format(p: _Paths) -> None:
    """Format the KRaft log directory once."""
    if (p.data / "meta.properties").exists():
        return
    run(_java(p, "kafka.tools.StorageTool", "format", "-t", _cluster_id(p), "-c", str(p.conf), "-g"))


def _start(p: _Paths) -> int:
    """Launch the broker detached from this process and record its PID."""
    with p.out.open("ab") as log:
        proc = subprocess.Popen(
            _java(p, "-XX:+ExitOnOutOfMemoryError", MAIN_CLASS, str(p.conf)),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=p.root,
            start_new_session=True,
        )
    p.pid.write_text(f"{proc.pid}\n")
    return proc.pid


async def _metadata_ok(bootstrap: str) -> bool:
    """Whether the broker answers a real metadata request."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await admin.start()
        await admin.list_topics()
    except Exception:
        return False
    finally:
        await admin.close()
    return True


def ready(settings: Settings) -> bool:
    """Whether the port accepts TCP and the broker serves metadata."""
    if not port_open(settings.kafka_host, settings.kafka_port):
        return False
    return run_async(lambda: _metadata_ok(f"{settings.kafka_host}:{settings.kafka_port}"))


def up(settings: Settings) -> None:
    """Install, format and start Kafka unless it already answers; wait until it serves metadata."""
    t0 = time.monotonic()
    p = _Paths(settings)
    if ready(settings):
        print("kafka: already running")
        return
    pid = pid_alive(p.pid, MAIN_CLASS)
    if pid is None and not port_open(settings.kafka_host, settings.kafka_port):
        _ensure_tools()
        _fetch_libs(settings, p)
        _write_config(settings, p)
        _format(p)
        pid = _start(p)

    def _check() -> bool:
        if pid is not None and gone(pid):
            raise ServiceError(f"kafka exited during startup; last log lines:\n{tail(p.out)}")
        return ready(settings)

    if not wait_for(_check, READY_TIMEOUT_S, interval=0.5):
        raise ServiceError(f"kafka not ready after {READY_TIMEOUT_S:.0f}s; last log lines:\n{tail(p.out)}")
    print(f"kafka: started ({settings.kafka_version}) in {time.monotonic() - t0:.1f}s")


def down(settings: Settings) -> None:
    """Stop the broker we started (controlled shutdown, then SIGKILL after 60 s)."""
    p = _Paths(settings)
    pid = pid_alive(p.pid, MAIN_CLASS)
    if pid is None:
        print("kafka: not running (nothing we started)")
        return
    stop_pid(pid, timeout=60)
    p.pid.unlink(missing_ok=True)
    print("kafka: stopped")


def status(settings: Settings) -> bool:
    """Whether something answers on the Kafka port."""
    return port_open(settings.kafka_host, settings.kafka_port)


def pid(settings: Settings) -> int | None:
    """PID of the broker we started, if it runs."""
    return pid_alive(_Paths(settings).pid, MAIN_CLASS)
