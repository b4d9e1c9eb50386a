"""Full-text search index of posts and users (PostgreSQL `search_posts`, `search_users`).

In: post-parsed, post-deleted, user-registered, user-profile-synced, user-profile-updated, report-decisions (a
suspension leaves the account out of user search), account-deleted.
Out: rows in this model's own tables through the `SearchIndex` port (store/search.py); nothing published.
Idempotency: one upsert per batch keyed by post id / user id. A delete leaves a tombstone that a later (or
redelivered) post-parsed never revives, whichever arrives first; a newer render replaces an older one; every profile
field is last-writer-wins by (occurred_at, value). The same events in any order, any number of times, leave the
same rows.
"""

from __future__ import annotations

from consumers.runtime import Consumer, Context
from schemas import topics
from schemas.events import (
    AccountDeleted,
    PostDeleted,
    PostParsed,
    ReportResolved,
    UserProfileSynced,
    UserProfileUpdated,
    UserRegistered,
)
from store.users import ProfileChange

consumer = Consumer(
    "search",
    "Full-text index of posts and users for GET /api/search.",
    tables=("search_posts", "search_users"),
    reader_indexes=("search_posts_author", "search_posts_replies"),
    gather=True,
)


@consumer.on(topics.POST_PARSED, batch=True)
async def on_post_parsed(events: list[PostParsed], ctx: Context) -> None:
    """Index the batch's posts in one statement."""
    await ctx.search.save_parsed(events)


@consumer.on(topics.POST_DELETED, batch=True)
async def on_post_deleted(events: list[PostDeleted], ctx: Context) -> None:
    """Tombstone the batch's posts in one statement."""
    await ctx.search.save_deleted(events)


@consumer.on(topics.USER_REGISTERED, batch=True)
async def on_user_registered(events: list[UserRegistered], ctx: Context) -> None:
    """Index new users' handles and names."""
    await ctx.search.save_profiles([ProfileChange.of(e) for e in events])


@consumer.on(topics.USER_PROFILE_SYNCED, batch=True)
async def on_user_profile_synced(events: list[UserProfileSynced], ctx: Context) -> None:
    """Apply handle, name and avatar changes synced from GitHub."""
    await ctx.search.save_profiles([ProfileChange.of(e) for e in events])


@consumer.on(topics.USER_PROFILE_UPDATED, batch=True)
async def on_user_profile_updated(events: list[UserProfileUpdated], ctx: Context) -> None:
    """Apply name and bio edits."""
    await ctx.search.save_profiles([ProfileChange.of(e) for e in events])


@consumer.on(topics.REPORT_DECISIONS, batch=True)
async def on_report_resolved(events: list[ReportResolved], ctx: Context) -> None:
    """Leave suspended accounts out of user search."""
    suspended = [e.payload.user_id for e in events if e.payload.action == "suspend"]
    if suspended:
        await ctx.search.save_suspended(suspended)


@consumer.on(topics.ACCOUNT_DELETED, batch=True)
async def on_account_deleted(events: list[AccountDeleted], ctx: Context) -> None:
    """A deleted account is no longer found (its posts leave by the post-deleted events derived for them)."""
    await ctx.pg.execute(
        "DELETE FROM search_users WHERE user_id = ANY($1::text[])", [e.payload.user_id for e in events]
    )
