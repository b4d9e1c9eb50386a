"""Every topic of the system: the one place a topic name is written."""

from __future__ import annotations

import os
from dataclasses import dataclass

KEEP_FOREVER = -1
# Put before every topic name (and the Redis channels that announce posts). Empty for the app; the tests set
# `CHIRP_TOPIC_NAMESPACE=test-` before anything imports this module, so their events never reach the app's topics.
NAMESPACE = os.environ.get("CHIRP_TOPIC_NAMESPACE", "")


@dataclass(frozen=True, slots=True)
class Topic:
    name: str
    key: str  # which payload field keys the messages (per-key order is what consumers rely on)
    partitions: int = 3
    retention_ms: int = KEEP_FOREVER

    def __str__(self) -> str:
        return self.name


POST_CREATED = Topic(f"{NAMESPACE}post-created", key="post_id")
POST_PARSED = Topic(f"{NAMESPACE}post-parsed", key="post_id")
POST_DELETED = Topic(f"{NAMESPACE}post-deleted", key="post_id")
USER_REGISTERED = Topic(f"{NAMESPACE}user-registered", key="user_id")
USER_PROFILE_SYNCED = Topic(f"{NAMESPACE}user-profile-synced", key="user_id")
USER_PROFILE_UPDATED = Topic(f"{NAMESPACE}user-profile-updated", key="user_id")
USER_FOLLOWED = Topic(f"{NAMESPACE}user-followed", key="follower_id")
USER_UNFOLLOWED = Topic(f"{NAMESPACE}user-unfollowed", key="follower_id")
TRENDING_MODERATED = Topic(f"{NAMESPACE}trending-moderated", key="target", partitions=1)
NOTIFICATIONS_READ = Topic(f"{NAMESPACE}notifications-read", key="user_id")
# Interactions: one topic per kind carrying both directions (liked / unliked), keyed by the user, so one user's
# like and unlike of one post stay in order.
POST_LIKES = Topic(f"{NAMESPACE}post-likes", key="user_id")
POST_REPOSTS = Topic(f"{NAMESPACE}post-reposts", key="user_id")
POST_BOOKMARKS = Topic(f"{NAMESPACE}post-bookmarks", key="user_id")
# Account deletion (DELETE /api/me): every read model drops the account; the erasure consumer schedules its keys'
# deletion (docs/erasure.md).
ACCOUNT_DELETED = Topic(f"{NAMESPACE}account-deleted", key="user_id")
# Mutes and blocks: one topic per kind carrying both directions (muted / unmuted), keyed by the acting user, so one
# user's mute and unmute of another stay in order.
USER_MUTES = Topic(f"{NAMESPACE}user-mutes", key="user_id")
USER_BLOCKS = Topic(f"{NAMESPACE}user-blocks", key="user_id")
# Reports to the operators and their decisions, keyed by the report (a decision may come before its report in a
# replay: the moderation consumer takes either order).
REPORTS = Topic(f"{NAMESPACE}reports", key="report_id")
REPORT_DECISIONS = Topic(f"{NAMESPACE}report-decisions", key="report_id")

ALL: tuple[Topic, ...] = (
    POST_CREATED,
    POST_PARSED,
    POST_DELETED,
    USER_REGISTERED,
    USER_PROFILE_SYNCED,
    USER_PROFILE_UPDATED,
    USER_FOLLOWED,
    USER_UNFOLLOWED,
    TRENDING_MODERATED,
    NOTIFICATIONS_READ,
    POST_LIKES,
    POST_REPOSTS,
    POST_BOOKMARKS,
    ACCOUNT_DELETED,
    USER_MUTES,
    USER_BLOCKS,
    REPORTS,
    REPORT_DECISIONS,
)
BY_NAME = {topic.name: topic for topic in ALL}

DEAD_LETTER_PREFIX = f"{NAMESPACE}dead-letters-"


def dead_letters(consumer: str) -> Topic:
    """The dead-letter topic of one consumer group."""
    return Topic(f"{DEAD_LETTER_PREFIX}{consumer}", key="(original key)", partitions=1)


RETRY_PREFIX = f"{NAMESPACE}retry-"


def retries(consumer: str) -> Topic:
    """Events `chirp dlq retry` re-delivers to one consumer group: only that group reads it."""
    return Topic(f"{RETRY_PREFIX}{consumer}", key="(original key)", partitions=1)
