"""chirp/logging.py: every line a process writes is one JSON object, and identical failures are rate-limited."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import asyncio, logging, time, warnings
    import faststream.kafka  # imported before configure(), as in a consumer process: it brings its own handler
    from chirp.logging import configure, get_logger

    configure(process="probe", repeat_window_s=0.5)

    def fail():
        raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 1)")

    for name in ("uvicorn.error", "asyncpg.pool", "aiokafka", "faststream"):
        try:
            fail()
        except OSError:
            logging.getLogger(name).exception("Exception in ASGI application")
    try:
        fail()
    except OSError:
        get_logger("chirp.gateway").exception("unhandled error", path="/x")
    for _ in range(500):  # an outage: the same failure again and again
        logging.getLogger("aiokafka").error("Unable connect to node with id %s: %s", 1, "refused")
        get_logger("chirp.consumer").warning("store unavailable", error="OOM command not allowed")
    for name in ("posts", "search", "posts"):  # one failure, two consumers: each says it once
        get_logger("chirp.consumer").warning("outage began", consumer=name, error="OOM command not allowed")
    time.sleep(0.6)
    logging.getLogger("aiokafka").error("Unable connect to node with id %s: %s", 1, "refused")
    get_logger("chirp.consumer").warning("store unavailable", error="OOM command not allowed")
    logging.getLogger("faststream").info("FastStream app started successfully!")
    for i in range(3):  # different information lines are never limited
        get_logger("chirp").info("served", n=i)
    warnings.warn("deprecated thing")

    async def orphan():
        raise RuntimeError("lost task")

    async def main():
        asyncio.get_running_loop().create_task(orphan())
        await asyncio.sleep(0.01)

    asyncio.run(main())
    fail()  # uncaught: the process dies with a JSON line
    """
)


def test_every_line_is_json_with_structured_tracebacks_and_repeats_suppressed() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, timeout=60)
    lines = (done.stdout + done.stderr).splitlines()
    records = [json.loads(line) for line in lines]  # fails on any line that is not JSON
    assert all(isinstance(r, dict) and r.get("process") == "probe" for r in records)

    for name in ("uvicorn.error", "asyncpg.pool", "aiokafka", "faststream"):
        (logged,) = [r for r in records if r.get("logger") == name and r["event"].startswith("Exception")]
        assert logged["exception"][0]["exc_type"] == "ConnectionRefusedError"  # a traceback inside the line
    assert any(r["event"] == "unhandled error" and r["exception"] for r in records)

    kafka = [r for r in records if r["event"].startswith("Unable connect")]
    assert [r.get("suppressed") for r in kafka] == [None, 499]
    store = [r for r in records if r["event"] == "store unavailable"]
    assert [r.get("suppressed") for r in store] == [None, 499]
    assert [r["consumer"] for r in records if r["event"] == "outage began"] == ["posts", "search"]
    assert [r["n"] for r in records if r["event"] == "served"] == [0, 1, 2]
    assert any(r["event"] == "FastStream app started successfully!" for r in records)
    assert any("deprecated thing" in r["event"] for r in records)
    assert any(r["event"] == "uncaught exception" for r in records)
    assert len(lines) < 30
