"""`chirp erasure status` and `chirp erasure verify ID` (docs/erasure.md)."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition

from chirp.settings import Settings
from consumers.runtime.decoding import erasure_of
from ops import _kafka
from producers.sealing import ERASED_KEY
from schemas.topics import NAMESPACE
from store import erasure
from store.keys import PgKeyStore
from store.postgres import connect


async def status(settings: Settings) -> list[dict[str, object]]:
    pool = await connect(settings, max_size=2)
    try:
        return await erasure.status(pool)
    finally:
        await pool.close()


@dataclass
class Verdict:
    """What `verify` found: records that mention the id, and those of them still readable (by topic)."""

    target: str
    mentioned: int = 0
    readable: dict[str, list[int]] = field(default_factory=dict)  # topic/partition -> offsets

    @property
    def clean(self) -> bool:
        return not self.readable


async def verify(settings: Settings, target: str) -> Verdict:
    """Read every topic of this deployment from the beginning; a record that mentions `target` (key, value or
    headers) is a readable trace unless it belongs to an erased key (then every consumer skips it and its sealed
    fields cannot be opened)."""
    needle = target.encode()
    verdict = Verdict(target)
    found: list[tuple[TopicPartition, int, tuple[str, ...]]] = []
    reader = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False)
    await reader.start()
    try:
        names = [t for t in await reader.topics() if t.startswith(NAMESPACE) and not t.startswith("__")]
        ends = await reader.end_offsets(await _kafka.partitions(reader, names))
        left = {tp for tp, end in ends.items() if end > 0}
        reader.assign(list(left))
        if left:
            await reader.seek_to_beginning(*left)
        while left:
            for tp, records in (await reader.getmany(timeout_ms=500, max_records=10_000)).items():
                for r in records:
                    raw = (r.key or b"") + (r.value or b"") + b"".join(v for _, v in r.headers or ())
                    if needle in raw:
                        found.append((tp, r.offset, erasure_of(r)[0]))
                if records and records[-1].offset + 1 >= ends[tp]:
                    left.discard(tp)
    finally:
        await reader.stop()
    verdict.mentioned = len(found)
    pool = await connect(settings, max_size=2)
    try:
        keys = await PgKeyStore(pool, lost_keys="skip").load({k for _, _, bound in found for k in bound})
    finally:
        await pool.close()
    for tp, offset, bound in found:
        if not any(keys.get(k) == ERASED_KEY for k in bound):
            verdict.readable.setdefault(f"{tp.topic}/{tp.partition}", []).append(offset)
    return verdict
