"""A dedicated Debian PostgreSQL cluster ("chirp", or "chirp-<port>" on another port) with the app role, databases,
pg_trgm and rum."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from chirp.settings import Settings
from ops.services._util import ServiceError, apt_install, instance_name, port_open, privileged, run, wait_for

READY_TIMEOUT_S = 60.0
PG_ROOT = Path("/usr/lib/postgresql")

# Crash safety stays on (fsync, full page writes, synchronous commit: PostgreSQL's defaults). Without it a machine
# that stops uncleanly keeps whatever pages the kernel had flushed, and an index can point past its own file. A
# commit's WAL flush costs ~0.1 ms on an SSD; consumers commit once per batch. More WAL between checkpoints means
# fewer full-page images when a replay writes a large table.
CONF = {
    "max_connections": "200",
    "max_wal_size": "4GB",
}


def memory_conf() -> dict[str, str]:
    """Cache sizes from the machine's memory (the usual quarter for shared buffers, capped at 2 GB)."""
    total_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    return {
        "shared_buffers": f"{max(128, min(2048, total_mb // 4))}MB",
        "effective_cache_size": f"{max(512, total_mb // 2)}MB",
        "random_page_cost": "1.1",  # data lives in memory or on SSD
    }


PROVISION_SQL = r"""
SELECT format('CREATE ROLE %I', :'user')
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'user') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN CREATEDB PASSWORD %L', :'user', :'pw') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', d, :'user') FROM unnest(ARRAY[:'db', :'test_db']) AS d
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = d) \gexec
\connect template1
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS rum;
\connect :db
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS rum;
\connect :test_db
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS rum;
"""


def _version() -> str | None:
    """The newest PostgreSQL server version installed under /usr/lib/postgresql."""
    versions = [d.name for d in PG_ROOT.glob("*") if (d / "bin" / "postgres").exists()] if PG_ROOT.exists() else []
    return max(versions, key=lambda v: [int(x) for x in v.split(".") if x.isdigit()], default=None)


def cluster(settings: Settings) -> str:
    """Our cluster's name: "chirp" on the default port, "chirp-<port>" for a second stack on another port."""
    return instance_name("chirp", settings, "postgres_port")


def _cluster_state(version: str, name: str) -> str | None:
    """'online'/'down' for the cluster `name`, or None when it does not exist."""
    out = run(["pg_lsclusters", "--no-header"]).stdout
    for line in out.splitlines():
        cols = line.split()
        if cols[:2] == [version, name]:
            return "online" if cols[3].startswith("online") else cols[3]
    return None


def _install() -> str:
    """Install PostgreSQL and the rum extension from Debian when missing and return the server version."""
    version = _version()
    if version is None or not shutil.which("pg_createcluster"):
        apt_install("postgresql", "postgresql-contrib")
        version = _version()
    if version is None:
        raise ServiceError(f"no PostgreSQL server found under {PG_ROOT} after installing")
    if not (PG_ROOT / version / "lib" / "rum.so").exists():
        # Its build may need a newer server release, which apt then installs too: see `up`.
        apt_install(f"postgresql-{version}-rum")
    return version


def _configure(settings: Settings, version: str) -> bool:
    """Create the cluster once, set its port, write our settings to conf.d/chirp.conf; True if they changed."""
    name = cluster(settings)
    if _cluster_state(version, name) is None:
        create = ["pg_createcluster", version, name, "--port", str(settings.postgres_port)]
        create += ["--locale", "C.UTF-8", "--encoding", "UTF8", "--start-conf", "manual"]
        run(privileged([*create, "--", "--auth-host=scram-sha-256", "--auth-local=peer"]))
    run(privileged(["pg_conftool", version, name, "set", "port", str(settings.postgres_port)]))
    conf = {**CONF, **memory_conf(), "listen_addresses": settings.postgres_host}
    text = "# Written by ops.services.postgres on every start.\n"
    text += "".join(f"{key} = '{value}'\n" for key, value in conf.items())
    path = Path("/etc/postgresql") / version / name / "conf.d" / "chirp.conf"
    if path.exists() and path.read_text() == text:
        return False
    run(privileged(["tee", str(path)]), input=text)
    return True


def _as_postgres(args: list[str], stdin: str | None = None) -> None:
    """Run a client command as the postgres OS user (peer auth over the local socket)."""
    run(privileged(["runuser", "-u", "postgres", "--", *args]), input=stdin, cwd="/")


def _server_version(settings: Settings) -> str:
    """The version the running server reports, e.g. '15.18'."""
    cmd = ["psql", "-X", "-tA", "-p", str(settings.postgres_port), "-d", "postgres", "-c", "SHOW server_version"]
    out = run(privileged(["runuser", "-u", "postgres", "--", *cmd]), cwd="/").stdout
    return out.split()[0]


def _installed_version(version: str) -> str:
    """The version of the installed server binary, e.g. '15.20'."""
    out = run([str(PG_ROOT / version / "bin" / "postgres"), "--version"]).stdout
    return out.split(")")[1].split()[0]


def _provision(settings: Settings) -> None:
    """Create or update the app role, both databases and the pg_trgm and rum extensions (template1 too)."""
    variables = {
        "user": settings.postgres_user,
        "pw": settings.postgres_password.get_secret_value(),
        "db": settings.postgres_db,
        "test_db": settings.postgres_test_db,
    }
    psql = ["psql", "-X", "-q", "-p", str(settings.postgres_port), "-d", "postgres", "-v", "ON_ERROR_STOP=1"]
    for name, value in variables.items():
        psql += ["-v", f"{name}={value}"]
    _as_postgres([*psql, "-f", "-"], stdin=PROVISION_SQL)


def login_ok(settings: Settings, db: str | None = None) -> bool:
    """Whether the app credentials open a TCP session to db."""
    env = {
        **os.environ,
        "PGPASSWORD": settings.postgres_password.get_secret_value(),
        "PGCONNECT_TIMEOUT": "3",
    }
    cmd = ["psql", "-X", "-w", "-h", settings.postgres_host, "-p", str(settings.postgres_port)]
    cmd += ["-U", settings.postgres_user, "-d", db or settings.postgres_db, "-tAc", "SELECT 1"]
    try:
        return run(cmd, env=env).stdout.strip() == "1"
    except ServiceError:
        return False


def _ready(settings: Settings) -> bool:
    """pg_isready over TCP on our port."""
    cmd = ["pg_isready", "-q", "-h", settings.postgres_host, "-p", str(settings.postgres_port)]
    try:
        run(cmd)
    except ServiceError:
        return False
    return True


def up(settings: Settings) -> None:
    """Install, create and start the cluster unless running; ensure role, databases and extensions exist."""
    t0 = time.monotonic()
    version = _install()
    name = cluster(settings)
    state = _cluster_state(version, name)
    foreign = state != "online" and port_open(settings.postgres_host, settings.postgres_port)
    started = False
    if state != "online" and not foreign:
        _configure(settings, version)
        run(privileged(["pg_ctlcluster", version, name, "start"]))
        started = True
    elif state == "online" and _configure(settings, version):
        run(privileged(["pg_ctlcluster", version, name, "reload"]))
        print("postgres: settings changed, reloaded")
    if not wait_for(lambda: _ready(settings), READY_TIMEOUT_S):
        log = f"/var/log/postgresql/postgresql-{version}-{name}.log"
        raise ServiceError(f"postgres not ready on port {settings.postgres_port}; see {log}")
    if not foreign and not started and _server_version(settings) != _installed_version(version):
        # A running server older than its package (upgraded since it started) cannot load the new extensions.
        run(privileged(["pg_ctlcluster", version, name, "restart", "-m", "fast"]))
        if not wait_for(lambda: _ready(settings), READY_TIMEOUT_S):
            raise ServiceError(f"postgres not ready on port {settings.postgres_port} after its restart")
        print(f"postgres: restarted on the upgraded server ({_installed_version(version)})")
    if not foreign:
        _provision(settings)
    for db in (settings.postgres_db, settings.postgres_test_db):
        if not login_ok(settings, db):
            raise ServiceError(f"postgres: cannot log in as {settings.postgres_user} to {db} over TCP")
    if started:
        print(f"postgres: started ({version}/{name}) in {time.monotonic() - t0:.1f}s")
    else:
        print("postgres: already running")


def down(settings: Settings) -> None:
    """Stop our cluster (fast shutdown) if it runs."""
    version = _version()
    name = cluster(settings)
    if version is None or _cluster_state(version, name) != "online":
        print("postgres: not running (nothing we started)")
        return
    run(privileged(["pg_ctlcluster", version, name, "stop", "-m", "fast"]))
    print("postgres: stopped")


def status(settings: Settings) -> bool:
    """Whether something accepts connections on the PostgreSQL port."""
    return port_open(settings.postgres_host, settings.postgres_port)
