"""`chirp lag`: per consumer group and partition, the committed offset, the end offset, the lag, and how long
the oldest unprocessed event has waited."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import TopicPartition

from chirp.ops import _kafka
from chirp.settings import Settings


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
    async with _kafka.admin(settings) as client, _kafka.reader(settings) as kafka:
        known = await _kafka.groups(client)
        ours = set(settings.consumer_groups.values())
        if groups:
            ids = [group_named(settings, name, known) for name in groups]
        else:
            ids = [g for g in known if g.startswith(settings.consumer_group_prefix) or g in ours]
        fetched = await asyncio.gather(*(_kafka.committed(client, group) for group in ids))
        committed = dict(zip(ids, fetched, strict=True))
        named = sorted({tp.topic for offsets in committed.values() for tp in offsets})
        existing = set(await _kafka.partitions(kafka, named))
        tps = sorted({tp for offsets in committed.values() for tp in offsets if tp in existing})
        ends = await kafka.end_offsets(tps) if tps else {}
    wanted = sorted({(tp, o) for offsets in committed.values() for tp, o in offsets.items() if o < ends.get(tp, o)})
    records = await _records(settings, wanted)
    rows: list[PartitionLag] = []
    for group, offsets in committed.items():
        for tp, offset in sorted(offsets.items()):
            if tp in ends:
                record = records.get((tp, offset))
                at = datetime.fromtimestamp(record.timestamp / 1000, UTC) if record is not None else None
                rows.append(PartitionLag(group, tp.topic, tp.partition, offset, ends[tp], at))
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
