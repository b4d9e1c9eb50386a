"""Moderation: reports to the operators and their decisions.

In: reports (report-filed), report-decisions (report-resolved).  Out: PostgreSQL `reports` (store/reports.py) and
the Redis set of suspended accounts (`moderation:suspended`). What a decision hides is not this model's: the
operator's command publishes a moderated post-deleted per post it hides, which every post model applies.
Idempotency: upserts by report id, either event first, the newest decision winning; a set for suspensions.
"""

from __future__ import annotations

from consumers.runtime import Consumer, Context
from schemas import topics
from schemas.events import AccountDeleted, ReportFiled, ReportResolved
from store.reports import SUSPENDED_KEY

consumer = Consumer(
    "moderation",
    "Reports and their outcome in PostgreSQL; suspended accounts in Redis.",
    tables=("reports",),
    redis_prefixes=("moderation:",),
    reader_indexes=("reports_open", "reports_by_reporter"),
)


@consumer.on(topics.REPORTS, batch=True)
async def on_report_filed(events: list[ReportFiled], ctx: Context) -> None:
    await ctx.reports.save_filed(events)


@consumer.on(topics.REPORT_DECISIONS, batch=True)
async def on_report_resolved(events: list[ReportResolved], ctx: Context) -> None:
    await ctx.reports.save_resolved(events)
    suspended = sorted({e.payload.user_id for e in events if e.payload.action == "suspend"})
    if suspended:
        await ctx.redis.sadd(SUSPENDED_KEY, *suspended)


@consumer.on(topics.ACCOUNT_DELETED, batch=True)
async def on_account_deleted(events: list[AccountDeleted], ctx: Context) -> None:
    """The reports a deleted account filed go, the decisions on them stay (and reports about it, for the
    operators)."""
    await ctx.reports.forget_reporters([e.payload.user_id for e in events])
