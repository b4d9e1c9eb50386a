"""`chirp topics`: every topic with its partitions (replicas, in sync, leader), message counts, and oldest and newest
offsets and times."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import TopicPartition

from chirp.settings import Settings
from ops import _kafka


@dataclass(frozen=True)
class PartitionInfo:
    topic: str
    partition: int
    oldest_offset: int  # first offset still in the log
    end_offset: int  # the next offset to be written
    oldest_at: datetime | None
    newest_at: datetime | None
    replicas: int = 1
    in_sync: int = 1
    leader: int = -1  # node id; -1 when the partition has none (its replicas' brokers are down)

    @property
    def messages(self) -> int:
        """Records in the log (exact for our topics: no transactions, no compaction outside dlq-decisions)."""
        return self.end_offset - self.oldest_offset

    @property
    def newest_offset(self) -> int | None:
        return self.end_offset - 1 if self.messages else None


def _at(timestamp_ms: int) -> datetime:
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC)


async def describe(settings: Settings, *, internal: bool = False) -> list[PartitionInfo]:
    """One row per partition of every topic (Kafka's own `__` topics only with `internal`), sorted by topic."""
    async with _kafka.admin(settings) as client, _kafka.reader(settings) as kafka:
        names = sorted(n for n in await client.list_topics() if internal or not n.startswith("__"))
        layout = {
            (t["topic"], p["partition"]): (len(p["replicas"]), len(p["isr"]), p["leader"])
            for t in (await client.describe_topics(names) if names else [])
            for p in t["partitions"]
        }
        tps = await _kafka.partitions(kafka, names)
        begin = await kafka.beginning_offsets(tps) if tps else {}
        end = await kafka.end_offsets(tps) if tps else {}
    nonempty = [tp for tp in tps if end[tp] > begin[tp]]
    oldest = await _kafka.records_at(settings, {tp: begin[tp] for tp in nonempty})
    newest = await _kafka.records_at(settings, {tp: end[tp] - 1 for tp in nonempty})

    def at(found: dict[TopicPartition, object], tp: TopicPartition) -> datetime | None:
        record = found.get(tp)
        return _at(record.timestamp) if record is not None else None  # type: ignore[attr-defined]

    return [
        PartitionInfo(
            tp.topic,
            tp.partition,
            begin[tp],
            end[tp],
            at(oldest, tp),
            at(newest, tp),
            *layout.get((tp.topic, tp.partition), (1, 1, -1)),
        )
        for tp in tps
    ]
