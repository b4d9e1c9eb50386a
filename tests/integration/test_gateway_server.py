"""`chirp gateway` as a real server in a child process: bounded requests, and logs that stay JSON and small.

Raw sockets send what well-behaved clients never do: oversized and endless bodies, huge or half-sent heads.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from chirp.settings import Settings
from tests.integration.faults import free_port, wait_port

MiB = 1024 * 1024


class Gateway:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc, self.port, self.log = proc, port, log
        self.url = f"http://127.0.0.1:{port}"

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=15)


def start_gateway(tmp: Path, env: dict[str, str]) -> Iterator[Gateway]:
    port = free_port()
    log = tmp / "gateway.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ops", "gateway"],
            env={**os.environ, "CHIRP_PORT": str(port), "CHIRP_PUBLIC_URL": f"http://127.0.0.1:{port}", **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_port(port, timeout=60)
        yield Gateway(proc, port, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    yield from start_gateway(tmp_path_factory.mktemp("gw"), {})


def status_of(sock: socket.socket) -> int:
    """The status code of the response on `sock` (reads its status line)."""
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0


def closed_within(sock: socket.socket, seconds: float) -> float:
    """Seconds until the server closed `sock` (reading whatever it sent first)."""
    started = time.monotonic()
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
    except (TimeoutError, ConnectionResetError):
        pass
    return time.monotonic() - started


def test_content_length_over_the_limit_is_refused_before_the_body(server: Gateway) -> None:
    with server.connect() as sock:
        head = f"POST /api/posts HTTP/1.1\r\nHost: x\r\nContent-Length: {100 * MiB}\r\n\r\n"
        sock.sendall(head.encode())  # no body at all: the answer must not wait for it
        assert status_of(sock) == 413
    for path in ("/auth/dev-login", "/login"):
        with server.connect() as sock:
            sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {150 * MiB}\r\n\r\n".encode())
            assert status_of(sock) == 413


def bearer(server: Gateway) -> bytes:
    response = httpx.post(f"{server.url}/auth/dev-login", json={"login": "limits-tester"})
    assert response.status_code == 200, response.text
    return f"Authorization: Bearer {response.json()['access_token']}\r\n".encode()


@pytest.mark.parametrize("path", ["/api/posts", "/auth/dev-login"])
def test_a_streamed_100_mb_body_is_cut_off_without_raising_rss(server: Gateway, path: str) -> None:
    auth = bearer(server) if path == "/api/posts" else b""
    before = server.rss_kib()
    chunk = b"x" * MiB
    with server.connect() as sock:
        sock.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n%s" % (path.encode(), auth))
        sock.sendall(b"Transfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(100):
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed: the rest is never read
        assert status_of(sock) in (413, 0)  # 0: reset before the status line could be read
    grown = server.rss_kib() - before
    assert grown < 10 * 1024, f"RSS grew by {grown} KiB"


def test_a_huge_or_crowded_head_is_refused(server: Gateway) -> None:
    with server.connect() as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (8 * MiB) + b"\r\n\r\n")
        assert status_of(sock) == 400
    with server.connect() as sock:
        many = b"".join(b"X-H%d: v\r\n" % i for i in range(200))
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
        assert status_of(sock) == 400
    assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_half_sent_heads_and_bodies_are_dropped_within_seconds(server: Gateway) -> None:
    settings = Settings()
    with server.connect() as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finished
        for _ in range(3):  # a byte now and then does not keep it open
            time.sleep(1)
            sock.sendall(b"X")
        assert closed_within(sock, 15) < settings.http_head_timeout_s + 2
    with server.connect() as sock:
        body_head = b"POST /auth/dev-login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        sock.sendall(body_head + b"Content-Length: 100\r\n\r\n{")
        started = time.monotonic()
        assert status_of(sock) == 408
        assert time.monotonic() - started < settings.http_body_timeout_s + 2


def test_logs_are_json_and_bounded_when_redis_is_unreachable(tmp_path: Path) -> None:
    dead = str(free_port())
    for gateway in start_gateway(tmp_path, {"CHIRP_REDIS_PORT": dead}):
        statuses = set()
        with httpx.Client(base_url=gateway.url, timeout=10) as client:
            for _ in range(50):
                response = client.post("/auth/dev-login", json={"login": "nobody"})
                statuses.add(response.status_code)
                assert response.headers["content-type"].startswith("application/json")
        assert statuses == {503}
    lines = gateway.log.read_bytes().splitlines()
    for line in lines:
        assert isinstance(json.loads(line), dict), line
    assert len(lines) < 30, b"\n".join(lines[:40]).decode()
    assert gateway.log.stat().st_size < 64 * 1024
