"""A three-master Redis Cluster on loopback from Debian's redis-server (`chirp services up --redis-cluster`).

Node i listens on `redis_cluster_port + i` with its own directory `redis-cluster-<first port>/node-<port>` (append-only
file, `nodes.conf`, pid and log). The first start gives each master a third of the 16,384 slots and introduces
them to each other; later starts find the cluster formed (its `nodes.conf`) and only start what is not running.
No replicas: this is for running and testing the app against a cluster on one machine, not for availability.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import redis

from chirp.settings import Settings
from ops.services._util import ServiceError, apt_install, pid_alive, run, stop_pid, tail, wait_for
from ops.services.redis import MARKER, ping

MASTERS = 3
SLOTS = 16384
READY_TIMEOUT_S = 30.0


def ports(settings: Settings) -> list[int]:
    return [settings.redis_cluster_port + i for i in range(MASTERS)]


def _dir(settings: Settings, port: int) -> Path:
    return settings.home / f"redis-cluster-{settings.redis_cluster_port}" / f"node-{port}"


def _client(settings: Settings, port: int) -> redis.Redis:
    return redis.Redis(host=settings.redis_host, port=port, decode_responses=True, socket_timeout=5)


def _info(settings: Settings, port: int) -> dict[str, str]:
    """CLUSTER INFO of one node; ServiceError when it answers but is not a cluster node (another Redis)."""
    with _client(settings, port) as client:
        try:
            raw = client.execute_command("CLUSTER", "INFO")
        except redis.ResponseError as exc:
            raise ServiceError(f"redis cluster: port {port} answers but is not a cluster node ({exc})") from None
    return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else _parse(str(raw))


def _parse(text: str) -> dict[str, str]:
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def formed(settings: Settings) -> bool:
    """Every node answers, sees all three and serves all slots."""
    try:
        infos = [_info(settings, port) for port in ports(settings)]
    except (redis.RedisError, OSError):
        return False
    return all(
        i.get("cluster_state") == "ok"
        and i.get("cluster_known_nodes") == str(MASTERS)
        and i.get("cluster_slots_ok") == str(SLOTS)
        for i in infos
    )


def _start(settings: Settings, port: int) -> None:
    work = _dir(settings, port)
    work.mkdir(parents=True, exist_ok=True)
    log = work / "redis.log"
    args = ["--port", str(port), "--bind", settings.redis_host, "--daemonize", "yes", "--dir", str(work)]
    args += ["--pidfile", str(work / "redis.pid"), "--logfile", str(log)]
    args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000"]
    args += ["--save", "", "--appendonly", "yes", "--appendfsync", "everysec"]
    run(["redis-server", *args])
    if not wait_for(lambda: ping(settings.redis_host, port), READY_TIMEOUT_S):
        raise ServiceError(f"redis cluster node not answering on {settings.redis_host}:{port}:\n{tail(log)}")


def _form(settings: Settings) -> None:
    """Give each master its third of the slots and introduce them (only on nodes that have no slots yet)."""
    nodes = ports(settings)
    bounds = [SLOTS * i // MASTERS for i in range(MASTERS + 1)]
    for i, port in enumerate(nodes):
        with _client(settings, port) as client:
            if _info(settings, port).get("cluster_slots_assigned") == "0":
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", bounds[i], bounds[i + 1] - 1)
            if i:
                client.execute_command("CLUSTER", "MEET", settings.redis_host, nodes[0])


def up(settings: Settings) -> None:
    """Start the nodes that are not running and form the cluster if it is not formed yet; idempotent."""
    t0 = time.monotonic()
    if formed(settings):
        print("redis cluster: already running")
        return
    if not shutil.which("redis-server"):
        apt_install("redis-server")
    for port in ports(settings):
        if ping(settings.redis_host, port):
            _info(settings, port)  # refuses a port taken by a Redis that is not a cluster node
        else:
            _start(settings, port)
    if not formed(settings):
        _form(settings)
    if not wait_for(lambda: formed(settings), READY_TIMEOUT_S):
        logs = "\n".join(tail(_dir(settings, p) / "redis.log", 5) for p in ports(settings))
        raise ServiceError(f"redis cluster did not form on ports {ports(settings)}:\n{logs}")
    print(f"redis cluster: started ({MASTERS} masters on {ports(settings)}) in {time.monotonic() - t0:.1f}s")


def pids(settings: Settings) -> list[int]:
    """PIDs of the nodes we started that still run."""
    found = (pid_alive(_dir(settings, port) / "redis.pid", MARKER) for port in ports(settings))
    return [pid for pid in found if pid is not None]


def down(settings: Settings) -> None:
    """Stop the nodes we started (their data and cluster membership stay for the next `up`)."""
    running = pids(settings)
    for pid in running:
        stop_pid(pid, timeout=15)
    print("redis cluster: stopped" if running else "redis cluster: not running (nothing we started)")


def status(settings: Settings) -> bool:
    return formed(settings)
