"""The `chirp` command: local services, the gateway, consumers, and the operator tools."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Annotated

import typer

from chirp.logging import configure, get_logger
from chirp.settings import Settings
from ops.cli import consumer_named, usage_error
from ops.cli import register as register_ops
from ops.reports import reports_app
from ops.trending import trending_app

app = typer.Typer(help="Chirp: an event-driven microblogging service.", no_args_is_help=True)
services_app = typer.Typer(help="Kafka, Redis and PostgreSQL on this machine (installed and started as needed).")
app.add_typer(services_app, name="services")
register_ops(app)  # topics, lag, replay, rebuild, seed, docs, dlq
app.add_typer(trending_app, name="trending")
app.add_typer(reports_app, name="reports")


BrokersOpt = Annotated[
    int | None,
    typer.Option(
        "--brokers",
        min=1,
        max=9,
        help="Kafka brokers on loopback (default CHIRP_KAFKA_BROKERS, 1). 3: a replicated KRaft cluster of its own"
        " (data apart from the single broker's); the app's processes then need CHIRP_KAFKA_BROKERS=3 too.",
    ),
]


RedisClusterOpt = Annotated[
    bool,
    typer.Option(
        "--redis-cluster",
        help="A three-master Redis Cluster on loopback (ports CHIRP_REDIS_CLUSTER_PORT, default 7000, and the next"
        " two) instead of the single Redis; the app's processes then need CHIRP_REDIS_CLUSTER=1 too.",
    ),
]


def _services_settings(brokers: int | None, redis_cluster: bool = False) -> Settings:
    overrides: dict[str, object] = {}
    if brokers is not None:
        overrides["kafka_brokers"] = brokers
    if redis_cluster:
        overrides["redis_cluster"] = True
    return Settings(**overrides)  # type: ignore[arg-type]


@services_app.command("up")
def services_up(brokers: BrokersOpt = None, redis_cluster: RedisClusterOpt = False) -> None:
    """Install what is missing and start what is not running; returns when everything answers."""
    from ops import services

    services.up(_services_settings(brokers, redis_cluster))


@services_app.command("down")
def services_down(brokers: BrokersOpt = None, redis_cluster: RedisClusterOpt = False) -> None:
    """Stop the local services started by `chirp services up`."""
    from ops import services

    services.down(_services_settings(brokers, redis_cluster))


@services_app.command("status")
def services_status(brokers: BrokersOpt = None, redis_cluster: RedisClusterOpt = False) -> None:
    """Say which services answer; exit 1 if any does not."""
    from ops import services

    status = services.status(_services_settings(brokers, redis_cluster))
    for name, ok in status.items():
        typer.echo(f"{name}: {'up' if ok else 'down'}")
    raise typer.Exit(0 if all(status.values()) else 1)


@app.command()
def schemas() -> None:
    """Write the JSON Schema of every event to schemas/json/ (a test checks the files match the models)."""
    from schemas.jsonschema import export

    for path in export():
        typer.echo(path)


@app.command()
def gateway(
    reload: Annotated[bool, typer.Option(help="Restart on code changes (dev).")] = False,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
) -> None:
    """Serve the gateway (HTTP API and pages) on CHIRP_HOST:CHIRP_PORT."""
    import uvicorn

    from gateway.server import BoundedHttpToolsProtocol

    settings = Settings()
    configure(process="gateway", repeat_window_s=settings.log_repeat_window_s)
    uvicorn.run(
        "gateway.asgi:app",
        host=settings.host,
        port=settings.port,
        reload=reload,
        workers=workers,
        log_config=None,
        access_log=False,
        proxy_headers=False,
        timeout_graceful_shutdown=5,  # live-update streams reconnect; don't hold a stopping gateway for them
        # A bounded request head, sent within a few seconds (gateway/server.py); bodies: gateway/limits.py.
        http=BoundedHttpToolsProtocol,
        h11_max_incomplete_event_size=settings.http_max_head_bytes,
        timeout_keep_alive=settings.http_head_timeout_s,
    )


@app.command()
def consume(
    names: Annotated[list[str] | None, typer.Argument(help="Consumers to run (module names under consumers/).")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Run every consumer in this one process.")] = False,
    metrics_port: Annotated[int | None, typer.Option(help="Port of /metrics (0: none).")] = None,
    group: Annotated[
        str | None,
        typer.Option(
            help="Kafka consumer group of the one consumer named (default: CHIRP_CONSUMER_GROUP_PREFIX + its name)."
            " On a shared broker, a group of your own leaves the app's consumers their partitions.",
        ),
    ] = None,
) -> None:
    """Run consumers until SIGTERM/SIGINT: finish the batch in flight, commit, exit 0."""
    from prometheus_client import start_http_server

    from consumers.runtime import all_consumers, build_app

    if not names and not all_:
        raise typer.BadParameter("name at least one consumer, or --all")
    consumers = all_consumers() if all_ else [consumer_named(n) for n in names or []]
    settings = Settings()
    if group is not None:
        if all_ or len(consumers) != 1 or not group:
            usage_error("--group takes a non-empty group id and exactly one consumer")
        settings = Settings(consumer_groups={**settings.consumer_groups, consumers[0].name: group})
    configure(
        process="consumers" if all_ else ",".join(c.name for c in consumers),
        repeat_window_s=settings.log_repeat_window_s,
    )
    port = settings.metrics_port if metrics_port is None else metrics_port
    if port:
        _serve_metrics(start_http_server, port, settings.host)
    asyncio.run(build_app(settings, consumers).run())


def _serve_metrics(start: Callable[..., object], port: int, host: str) -> None:
    """Serve /metrics on `port`, or the next free one when several consumer processes share a machine."""
    for candidate in range(port, port + 20):
        try:
            start(candidate, addr=host)
        except OSError:
            continue
        get_logger("chirp").info("metrics served", url=f"http://{host}:{candidate}/metrics")
        return
    get_logger("chirp").warning("no free metrics port", first=port, last=port + 19)


@app.command()
def run() -> None:
    """Run the whole app: services, the gateway and every consumer, logs labelled per process; Ctrl-C stops all."""
    from ops import services

    settings = Settings()
    configure(process="run", repeat_window_s=settings.log_repeat_window_s)
    services.up(settings)
    env = {**os.environ, "CHIRP_ENV": os.environ.get("CHIRP_ENV", "dev")}
    chirp = [sys.executable, "-m", "ops"]
    procs = {
        "gateway": subprocess.Popen([*chirp, "gateway"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT),
        "consumers": subprocess.Popen(
            [*chirp, "consume", "--all"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        ),
    }
    for label, proc in procs.items():
        threading.Thread(target=_relay, args=(label, proc), daemon=True).start()
    get_logger("chirp").info("running", ui=settings.public_url, stop="Ctrl-C")
    _supervise(procs)


def _relay(label: str, proc: subprocess.Popen[bytes]) -> None:
    """Each child's lines, labelled on a terminal; as they are (JSON, naming their `process`) otherwise."""
    assert proc.stdout is not None
    prefix = f"{label:>9} | " if sys.stdout.isatty() else ""
    for line in proc.stdout:
        sys.stdout.write(prefix + line.decode(errors="replace"))
        sys.stdout.flush()


def _supervise(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    """Wait until a child exits or we are told to stop; then stop every child gracefully."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        if any(p.poll() is not None for p in procs.values()):
            break
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs.values():
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
    codes = [p.returncode for p in procs.values()]
    raise typer.Exit(0 if stop.is_set() else max(abs(c) for c in codes))


def main() -> None:
    """`chirp`: the commands above; settings the environment got wrong are refused in one line (exit 2)."""
    from pydantic import ValidationError

    from chirp.settings import refusal

    try:
        app()
    except ValidationError as error:
        if error.title != Settings.__name__:
            raise
        typer.echo(f"chirp: {refusal(error)}", err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
