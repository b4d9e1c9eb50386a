"""Users projection: profiles, follows and follower counts.

In: user-registered, user-profile-synced, user-profile-updated, user-followed, user-unfollowed, account-deleted.
Out: the `users` and `follows` tables (store/users.py).
Idempotency: every profile field is last-writer-wins by occurred_at, every follow pair too (one row per pair);
counts move in the same transaction by what the upsert changed (a pair turning active or inactive), so an event
applied twice, or older than its pair's state, moves nothing; a registration counts the follows made before it.
"""

from __future__ import annotations

from consumers.runtime import Consumer, Context
from schemas import topics
from schemas.events import (
    AccountDeleted,
    UserFollowed,
    UserProfileSynced,
    UserProfileUpdated,
    UserRegistered,
    UserUnfollowed,
)
from store.users import FollowChange, ProfileChange, ProfileEvent

consumer = Consumer(
    "users",
    "Profiles, follows and exact follower counts in the users and follows tables.",
    tables=("users", "follows"),
    reader_indexes=("follows_followers_page", "follows_following_page"),  # (counts use follows_by_followee)
)


def follow_change(event: UserFollowed | UserUnfollowed) -> FollowChange:
    """The pair's state after the event."""
    data = event.payload
    return FollowChange(data.follower_id, data.followee_id, isinstance(event, UserFollowed), event.occurred_at)


async def _profiles(events: list[ProfileEvent], ctx: Context) -> None:
    await ctx.users.apply_profiles([ProfileChange.of(e) for e in events])


async def _follows(events: list[UserFollowed] | list[UserUnfollowed], ctx: Context) -> None:
    await ctx.users.apply_follows([follow_change(e) for e in events])


@consumer.on(topics.USER_REGISTERED, batch=True)
async def on_user_registered(events: list[UserRegistered], ctx: Context) -> None:
    await _profiles(list(events), ctx)


@consumer.on(topics.USER_PROFILE_SYNCED, batch=True)
async def on_user_profile_synced(events: list[UserProfileSynced], ctx: Context) -> None:
    await _profiles(list(events), ctx)


@consumer.on(topics.USER_PROFILE_UPDATED, batch=True)
async def on_user_profile_updated(events: list[UserProfileUpdated], ctx: Context) -> None:
    await _profiles(list(events), ctx)


@consumer.on(topics.USER_FOLLOWED, batch=True)
async def on_user_followed(events: list[UserFollowed], ctx: Context) -> None:
    await _follows(events, ctx)


@consumer.on(topics.USER_UNFOLLOWED, batch=True)
async def on_user_unfollowed(events: list[UserUnfollowed], ctx: Context) -> None:
    await _follows(events, ctx)


@consumer.on(topics.ACCOUNT_DELETED, batch=True)
async def on_account_deleted(events: list[AccountDeleted], ctx: Context) -> None:
    """The profile goes; its follows go with the unfollows the erasure consumer derives (others' counts move)."""
    await ctx.users.delete_users([e.payload.user_id for e in events])
