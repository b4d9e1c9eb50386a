"""Shared helpers of the erasure tests: raw reads of the log, and a rebuild of every model."""

from __future__ import annotations

import asyncio
import os
import sys

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from chirp.settings import Settings
from schemas.topics import NAMESPACE


async def records(bootstrap_servers: str, prefix: str) -> list[ConsumerRecord]:
    """Every record of every topic named `prefix…`, from offset 0, read with plain aiokafka (no Chirp code)."""
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False)
    await reader.start()
    found: list[ConsumerRecord] = []
    try:
        names = [t for t in await reader.topics() if t.startswith(prefix)]
        await reader._client.set_topics(names)
        tps = [TopicPartition(t, p) for t in names for p in reader._client.cluster.partitions_for_topic(t) or ()]
        ends = await reader.end_offsets(tps) if tps else {}
        left = {tp for tp, end in ends.items() if end > 0}
        reader.assign(list(left))
        if left:
            await reader.seek_to_beginning(*left)
        while left:
            for tp, part in (await reader.getmany(timeout_ms=500, max_records=5000)).items():
                found += part
                if part and part[-1].offset + 1 >= ends[tp]:
                    left.discard(tp)
    finally:
        await reader.stop()
    return found


async def raw_log(bootstrap_servers: str, namespace: str = NAMESPACE) -> bytes:
    """Every record (key, value, headers) of every topic of the namespace, from offset 0, as bytes."""
    found = await records(bootstrap_servers, namespace)
    return b"\n".join(part or b"" for r in found for part in (r.key, r.value, *(v for _, v in r.headers)))


async def dead_letters(settings: Settings) -> set[tuple[str, ...]]:
    """Every dead letter of this namespace as (dead-letter topic, original topic, partition, offset): a rebuild
    that dead-letters again a poison event planted by another test adds no new one."""
    found = set()
    for r in await records(settings.bootstrap_servers, f"{NAMESPACE}dead-letters-"):
        h = {k: v.decode() for k, v in r.headers}
        found.add((r.topic, h.get("dlq_topic", ""), h.get("dlq_partition", ""), h.get("dlq_offset", "")))
    return found


async def rebuild_all() -> None:
    """`chirp rebuild --all`: every read model replayed from the log and swapped in."""
    cmd = [sys.executable, "-m", "ops", "rebuild", "--all", "--jobs", "2"]
    proc = await asyncio.create_subprocess_exec(*cmd, env={**os.environ})
    assert await asyncio.wait_for(proc.wait(), 600) == 0
