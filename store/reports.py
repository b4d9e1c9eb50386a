"""The reports read model: PostgreSQL `reports` (migration 070) and the Redis set of suspended accounts.

Writes come from the moderation consumer; reads serve `GET /api/me/reports`, `chirp reports` and the gateway's
check of suspended accounts (one SISMEMBER per authenticated request, beside the session check).
- A report and its decision are upserts by report id, either first; the newest decision wins (resolved_at).
- `SUSPENDED_KEY` holds the ids of suspended accounts: logins, refreshes and tokens of theirs are refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import asyncpg

from schemas.events import ReportFiled, ReportResolved

SUSPENDED_KEY = "moderation:suspended"  # Redis set of suspended user ids (under the consumer's `moderation:` prefix)


@dataclass(frozen=True, slots=True)
class Report:
    id: str
    reporter_id: str | None
    post_id: str | None
    user_id: str
    handle: str
    reason: str | None
    comment: str
    filed_at: datetime | None
    action: str | None  # takedown | dismiss | suspend, None while open
    note: str
    resolved_at: datetime | None

    @property
    def status(self) -> str:
        return "open" if self.resolved_at is None else "resolved"


_SAVE_FILED = """
INSERT INTO reports AS r (report_id, reporter_id, post_id, user_id, reason, comment, filed_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[])
ON CONFLICT (report_id) DO UPDATE SET
    reporter_id = EXCLUDED.reporter_id, post_id = EXCLUDED.post_id, user_id = EXCLUDED.user_id,
    reason = EXCLUDED.reason, comment = EXCLUDED.comment, filed_at = EXCLUDED.filed_at
"""

_SAVE_RESOLVED = """
INSERT INTO reports AS r (report_id, post_id, user_id, action, note, resolved_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[])
ON CONFLICT (report_id) DO UPDATE SET action = EXCLUDED.action, note = EXCLUDED.note, resolved_at = EXCLUDED.resolved_at
WHERE r.resolved_at IS NULL OR r.resolved_at < EXCLUDED.resolved_at
"""

# A departed reporter's reports go; a decision on one stays as the row the decision alone writes (what it acted on,
# when, why), which is what a rebuild leaves once the report itself is erased from the log.
_FORGET_REPORTERS = """
WITH open AS (DELETE FROM reports WHERE reporter_id = ANY($1::text[]) AND resolved_at IS NULL)
UPDATE reports SET reporter_id = NULL, reason = NULL, comment = '', filed_at = NULL,
    post_id = CASE WHEN action = 'takedown' THEN post_id END
WHERE reporter_id = ANY($1::text[]) AND resolved_at IS NOT NULL
"""

_SELECT = """
SELECT r.*, coalesce(u.handle, '') AS handle FROM reports r LEFT JOIN users u ON u.user_id = r.user_id
"""


def _report(row: Mapping[str, Any]) -> Report:
    return Report(
        row["report_id"],
        row["reporter_id"],
        row["post_id"],
        row["user_id"],
        row["handle"],
        row["reason"],
        row["comment"],
        row["filed_at"],
        row["action"],
        row["note"],
        row["resolved_at"],
    )


def _newest(events: Sequence[Any]) -> list[Any]:
    """One event per report id, the newest (one statement may not touch a row twice)."""
    newest: dict[str, Any] = {}
    for event in sorted(events, key=lambda e: e.occurred_at):
        newest[event.payload.report_id] = event
    return list(newest.values())


class ReportsReadModel(Protocol):
    """What the gateway reads about reports: a reporter's own, with their outcome."""

    async def by_reporter(self, reporter_id: str, limit: int = 100) -> list[Report]: ...


class PostgresReports:
    """The reports table."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def save_filed(self, events: Sequence[ReportFiled]) -> None:
        """Record reports (a redelivery writes the same row)."""
        rows = [(e.payload, e.occurred_at) for e in _newest(events)]
        columns = ("report_id", "reporter_id", "post_id", "user_id", "reason", "comment")
        args = [[getattr(d, c) for d, _ in rows] for c in columns]
        await self._pool.execute(_SAVE_FILED, *args, [a for _, a in rows])

    async def save_resolved(self, events: Sequence[ReportResolved]) -> None:
        """Record decisions; the newest per report wins."""
        rows = [(e.payload, e.occurred_at) for e in _newest(events)]
        columns = ("report_id", "post_id", "user_id", "action", "note")
        await self._pool.execute(
            _SAVE_RESOLVED, *[[getattr(d, c) for d, _ in rows] for c in columns], [a for _, a in rows]
        )

    async def forget_reporters(self, user_ids: Sequence[str]) -> None:
        """Take deleted accounts' reports out, keeping the operators' decisions on them (`_FORGET_REPORTERS`)."""
        await self._pool.execute(_FORGET_REPORTERS, list(user_ids))

    async def get(self, report_id: str) -> Report | None:
        row = await self._pool.fetchrow(f"{_SELECT} WHERE r.report_id = $1 AND r.filed_at IS NOT NULL", report_id)
        return _report(row) if row else None

    async def listed(self, *, open_only: bool, limit: int = 100) -> list[Report]:
        """Reports, oldest first (the queue an operator works through)."""
        where = "r.filed_at IS NOT NULL" + (" AND r.resolved_at IS NULL" if open_only else "")
        rows = await self._pool.fetch(f"{_SELECT} WHERE {where} ORDER BY r.filed_at, r.report_id LIMIT $1", limit)
        return [_report(r) for r in rows]

    async def by_reporter(self, reporter_id: str, limit: int = 100) -> list[Report]:
        """One reporter's reports, newest first."""
        sql = f"{_SELECT} WHERE r.reporter_id = $1 ORDER BY r.report_id DESC LIMIT $2"
        return [_report(r) for r in await self._pool.fetch(sql, reporter_id, limit)]
