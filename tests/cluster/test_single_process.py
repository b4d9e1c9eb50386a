"""The suggestions consumer applies follow edges one at a time under a lock of its process, so its group runs as one
process: a second `chirp consume suggestions` refuses to start while the first runs, and starts once it stopped."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.cluster.stack import Cluster


def test_a_second_process_of_a_single_process_consumer_refuses_to_start(
    cluster_topics: Cluster, tmp_path: Path
) -> None:
    first = cluster_topics.consume(["suggestions"], tmp_path / "first.log")
    _until_logged(tmp_path / "first.log", "consumers starting")
    second = cluster_topics.consume(["suggestions"], tmp_path / "second.log")
    assert second.wait(timeout=60) != 0
    assert "is held by" in (tmp_path / "second.log").read_text()
    assert first.poll() is None, "the first process runs on"

    Cluster.stop_process(first, signal.SIGTERM)  # a graceful stop releases the lease at once
    third = cluster_topics.consume(["suggestions"], tmp_path / "third.log")
    _until_logged(tmp_path / "third.log", "consumers starting")
    assert third.poll() is None
    Cluster.stop_process(third)


def _until_logged(log: Path, text: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and text in log.read_text():
            return
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not in {log} after {timeout} s")
