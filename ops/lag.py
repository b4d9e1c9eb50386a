"""`chirp lag`: per consumer group and partition, the committed offset, the end offset, the lag, and how long
the oldest unprocessed event has waited."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import TopicPartition

from chirp.kafka_admin import group_offsets
from chirp.settings import Settings
from ops import _kafka


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    committed: int
    end: int
    oldest_unprocessed_at: datetime | None  # the record at the committed offset, when there is one

    @property
    def lag(self) -> int:
        return max(0, self.end - self.committed)

    def age_s(self, now: datetime | None = None) -> float | None:
        """Seconds the oldest unprocessed event has waited (None when the group is caught up)."""
        if not self.lag or self.oldest_unprocessed_at is None:
            return None
        return max(0.0, ((now or datetime.now(UTC)) - self.oldest_unprocessed_at).total_seconds())


async def measure(settings: Settings, groups: list[str] | None = None) -> list[PartitionLag]:
    """Lag of every partition each group has committed an offset for: the groups named (see `group_named`), else
    every group under `CHIRP_CONSUMER_GROUP_PREFIX` (all of them when it is empty) and those of
    `CHIRP_CONSUMER_GROUPS`."""
    async with _kafka.admin(settings) as client:
        known = await _kafka.groups(client)
    if groups:
        ids = [group_named(settings, name, known) for name in groups]
    else:
        ours = set(settings.consumer_groups.values())
        ids = [g for g in known if g.startswith(settings.consumer_group_prefix) or g in ours]
    by_group = await group_offsets(settings, ids)
    wanted = sorted({(tp, done) for offsets in by_group.values() for tp, (done, end) in offsets.items() if done < end})
    records = await _records(settings, wanted)
    rows: list[PartitionLag] = []
    for group, offsets in by_group.items():
        for tp, (done, end) in offsets.items():
            record = records.get((tp, done))
            at = datetime.fromtimestamp(record.timestamp / 1000, UTC) if record is not None else None
            rows.append(PartitionLag(group, tp.topic, tp.partition, done, end, at))
    return rows


def group_named(settings: Settings, name: str, known: list[str]) -> str:
    """The group `name` means: a consumer's own group (its `CHIRP_CONSUMER_GROUPS` entry or the prefix + `name`)
    when that exists, else the group of that exact id; `UnknownName` when neither does."""
    for group in (settings.group(name), name):
        if group in known:
            return group
    raise _kafka.UnknownName(f"no consumer group {name!r} (`chirp lag` lists the groups)")


Position = tuple[TopicPartition, int]


async def _records(settings: Settings, wanted: list[Position]) -> dict[Position, Any]:
    """The record at each (partition, offset), fetched in rounds of one offset per partition."""
    found: dict[Position, Any] = {}
    pending = list(wanted)
    while pending:
        round_: dict[TopicPartition, int] = {}
        for tp, offset in pending:
            round_.setdefault(tp, offset)
        for tp, record in (await _kafka.records_at(settings, round_)).items():
            found[(tp, round_[tp])] = record
        pending = [(tp, o) for tp, o in pending if round_[tp] != o]
    return found
