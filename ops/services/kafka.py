"""KRaft Kafka built from Maven Central jars, run as detached JVMs under `settings.home`: one node (the default), or
a cluster of `settings.kafka_brokers` nodes on loopback, each broker and controller, each with its own ports, data
directory and pid file (`chirp services up --brokers 3`)."""

from __future__ import annotations

import base64
import shutil
import subprocess
import time
import uuid
from importlib.resources import files
from string import Template

from chirp.kafka_admin import replication
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
    """Where one Kafka version keeps its jars (shared), and one node its config, data and logs (one per port).

    A single node lives in `kafka/<version>[-<port>]` (the paths existing machines use); node i of a cluster in
    `kafka/<version>[-<port>]-x<brokers>/node-<i>`, so a cluster never shares a data directory with a single node.
    """

    def __init__(self, settings: Settings, node: int = 0) -> None:
        jars = settings.home / "kafka" / settings.kafka_version
        self.libs = jars / "libs"
        self.libs_ok = jars / "libs.complete"
        instance = settings.home / "kafka" / instance_name(settings.kafka_version, settings, "kafka_port")
        if settings.kafka_brokers == 1:
            self.root = instance
            self.cluster_id = self.root / "cluster.id"
        else:
            cluster = instance.with_name(f"{instance.name}-x{settings.kafka_brokers}")
            self.root = cluster / f"node-{node}"
            self.cluster_id = cluster / "cluster.id"
        self.node = node
        self.port = settings.kafka_port + 2 * node
        self.controller_port = settings.kafka_controller_port + 2 * node
        self.data = self.root / "data"
        self.logs = self.root / "logs"
        self.conf = self.root / "server.properties"
        self.log4j = self.root / "log4j2.properties"
        self.pid = self.root / "kafka.pid"
        self.out = self.logs / "kafka.out"


def nodes(settings: Settings) -> list[_Paths]:
    """Every node of the local cluster."""
    return [_Paths(settings, i) for i in range(settings.kafka_brokers)]


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
    """Render server.properties and log4j2.properties of one node."""
    p.logs.mkdir(parents=True, exist_ok=True)
    factor, min_isr = replication(settings.kafka_brokers)
    voters = ",".join(f"{n.node + 1}@{settings.kafka_host}:{n.controller_port}" for n in nodes(settings))
    values = {
        "node_id": p.node + 1,
        "voters": voters,
        "host": settings.kafka_host,
        "port": p.port,
        "controller_port": p.controller_port,
        "data_dir": p.data,
        "replication": factor,
        "min_isr": min_isr,
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


async def _brokers(bootstrap: str) -> int:
    """How many brokers the cluster behind `bootstrap` reports (0 when it does not answer a metadata request)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
    except Exception:
        return 0
    finally:
        await admin.close()
    return len(cluster["brokers"])


def _node_ready(settings: Settings, p: _Paths) -> bool:
    """Whether this node's port accepts TCP and the cluster it belongs to has all its brokers."""
    if not port_open(settings.kafka_host, p.port):
        return False
    return run_async(lambda: _brokers(f"{settings.kafka_host}:{p.port}")) >= settings.kafka_brokers


def ready(settings: Settings) -> bool:
    """Whether every node accepts TCP and serves metadata naming every broker."""
    return all(_node_ready(settings, p) for p in nodes(settings))


def up(settings: Settings) -> None:
    """Install, format and start every node that is not running; wait until the cluster serves metadata with all
    its brokers. A node whose port answers but is not ours (another cluster) is an error, never touched."""
    t0 = time.monotonic()
    if ready(settings):
        print("kafka: already running")
        return
    started: dict[int, _Paths] = {}
    for p in nodes(settings):
        pid = pid_alive(p.pid, MAIN_CLASS)
        if pid is None and port_open(settings.kafka_host, p.port):
            if settings.kafka_brokers > 1:
                raise ServiceError(f"kafka: port {p.port} answers but is not node {p.node} of this cluster")
            continue  # a single broker someone else started: reuse it once it answers
        if pid is None:
            _ensure_tools()
            _fetch_libs(settings, p)
            _write_config(settings, p)
            _format(p)
            pid = _start(p)
        started[pid] = p

    def _check() -> bool:
        for pid, p in started.items():
            if gone(pid):
                raise ServiceError(f"kafka node {p.node} exited during startup; last log lines:\n{tail(p.out)}")
        return ready(settings)

    if not wait_for(_check, READY_TIMEOUT_S, interval=0.5):
        logs = "\n".join(f"node {p.node}:\n{tail(p.out)}" for p in nodes(settings))
        raise ServiceError(f"kafka not ready after {READY_TIMEOUT_S:.0f}s; last log lines:\n{logs}")
    brokers = f", {settings.kafka_brokers} brokers" if settings.kafka_brokers > 1 else ""
    print(f"kafka: started ({settings.kafka_version}{brokers}) in {time.monotonic() - t0:.1f}s")


def down(settings: Settings) -> None:
    """Stop the nodes we started (controlled shutdown, then SIGKILL after 60 s)."""
    running = [(p, pid) for p in nodes(settings) if (pid := pid_alive(p.pid, MAIN_CLASS)) is not None]
    if not running:
        print("kafka: not running (nothing we started)")
        return
    for p, pid in running:
        stop_pid(pid, timeout=60)
        p.pid.unlink(missing_ok=True)
    print("kafka: stopped")


def status(settings: Settings) -> bool:
    """Whether something answers on every node's Kafka port."""
    return all(port_open(settings.kafka_host, p.port) for p in nodes(settings))


def pid(settings: Settings, node: int = 0) -> int | None:
    """PID of a node we started (the first by default), if it runs."""
    return pid_alive(_Paths(settings, node).pid, MAIN_CLASS)
