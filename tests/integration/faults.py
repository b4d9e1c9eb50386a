"""Private services to break in fault tests: a Redis, a Kafka broker and a TCP proxy of the test's own.

The shared services are never stopped or reconfigured: a test stops, pauses or fills only what it started here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from chirp.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port} after {timeout}s")


@contextlib.contextmanager
def private_redis() -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """A redis-server on a free port with no persistence; yields (port, process), killed at the end."""
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="chirp-redis-")
    cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen([*cmd, "--dir", workdir], stdout=subprocess.DEVNULL)
    try:
        wait_port(port)
        yield port, proc
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def private_kafka(base: Settings) -> Iterator[tuple[Settings, int]]:
    """A single-node Kafka of its own (ports, data under a temp dir; the cached jars); yields (settings, pid)."""
    from ops.services import kafka

    home = Path(tempfile.mkdtemp(prefix="chirp-kafka-"))
    settings = base.model_copy(
        update={"home": home, "kafka_port": free_port(), "kafka_controller_port": free_port(), "kafka_bootstrap": ""}
    )
    settings.__dict__.pop("bootstrap_servers", None)  # a cached property of the copied settings
    root = home / "kafka" / settings.kafka_version
    root.mkdir(parents=True)
    shared = base.home / "kafka" / base.kafka_version
    if (shared / "libs.complete").exists():
        (root / "libs").symlink_to(shared / "libs")
        (root / "libs.complete").symlink_to(shared / "libs.complete")
    try:
        kafka.up(settings)
        pid = kafka.pid(settings)
        assert pid is not None
        yield settings, pid
    finally:
        pid = kafka.pid(settings)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(home, ignore_errors=True)


class TcpProxy:
    """Forwards a free local port to `target_port`; `cut()` makes the target unreachable (refused, reset)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()
            self._writers.discard(writer)

    async def cut(self) -> None:
        """Stop listening and reset every forwarded connection: the target looks down."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
