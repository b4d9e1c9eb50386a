"""Event models: a shared envelope (id, type, version, occurred_at, correlation_id, causation_id, actor) around a
payload."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from ulid import ULID

from domain.text import Bio, DisplayName, Handle, NoNul, PostBody, Tag
from schemas import topics

# An id: 1 to 64 characters, no control characters (they would not survive PostgreSQL text or a log line).
Id = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")]


def new_id() -> str:
    """A new time-ordered id (ULID, 26 characters)."""
    return str(ULID())


def utcnow() -> datetime:
    return datetime.now(UTC)


class Payload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Event(BaseModel):
    """The envelope every event shares. Subclasses pin `type`, `version`, `topic` and the payload model."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    topic: ClassVar[topics.Topic]

    id: Id = Field(default_factory=new_id)
    type: str
    version: int
    occurred_at: datetime = Field(default_factory=utcnow)
    correlation_id: str = ""
    causation_id: str = ""  # a derived event's: the id of the event it was derived from (post-parsed: post-created)
    actor: str | None = None
    payload: Any

    @property
    def key(self) -> str:
        return str(getattr(self.payload, self.topic.key))


# Posts -----------------------------------------------------------------------------------------------------


class PostCreatedData(Payload):
    post_id: Id
    author_id: Id
    body: PostBody
    reply_to: Id | None = None
    quote_of: Id | None = None  # the post this one quotes (optional: version 1 events without it stay valid)
    # A `post-edited`'s: when the post was first created (its rendering keeps that time; the edit's is occurred_at)
    created_at: datetime | None = None


class PostCreated(Event):
    """`post-created` / `post-edited` (topic post-created, keyed by post id, so an edit stays in order behind its
    post and its earlier edits). An edit carries the whole new body, with the post's reply_to, quote_of and
    created_at as they were."""

    topic: ClassVar = topics.POST_CREATED
    type: Literal["post-created", "post-edited"] = "post-created"
    version: Literal[1] = 1
    payload: PostCreatedData

    @property
    def edited_at(self) -> datetime | None:
        """The time of this version when it is an edit; None for the first version."""
        return self.occurred_at if self.type == "post-edited" else None


class PostParsedData(Payload):
    post_id: Id
    author_id: Id
    body: PostBody
    html: NoNul
    text: NoNul
    hashtags: tuple[Tag, ...] = ()
    mentions: tuple[Handle, ...] = ()
    links: tuple[NoNul, ...] = ()
    reply_to: Id | None = None
    quote_of: Id | None = None
    created_at: datetime
    edited_at: datetime | None = None  # the time of this version when it is an edit (the newest version wins)


class PostParsed(Event):
    topic: ClassVar = topics.POST_PARSED
    type: Literal["post-parsed"] = "post-parsed"
    version: Literal[1] = 1
    payload: PostParsedData


class PostDeletedData(Payload):
    post_id: Id
    author_id: Id
    moderated: bool = False  # taken down by the operators (`chirp reports resolve --action takedown|suspend`)


class PostDeleted(Event):
    topic: ClassVar = topics.POST_DELETED
    type: Literal["post-deleted"] = "post-deleted"
    version: Literal[1] = 1
    payload: PostDeletedData


# Users -----------------------------------------------------------------------------------------------------


class UserRegisteredData(Payload):
    user_id: Id
    github_id: int | None = None
    handle: Handle
    display_name: NoNul = ""
    avatar_url: NoNul = ""


class UserRegistered(Event):
    topic: ClassVar = topics.USER_REGISTERED
    type: Literal["user-registered"] = "user-registered"
    version: Literal[1] = 1
    payload: UserRegisteredData


class UserProfileSyncedData(Payload):
    user_id: Id
    handle: Handle
    display_name: NoNul = ""
    avatar_url: NoNul = ""


class UserProfileSynced(Event):
    topic: ClassVar = topics.USER_PROFILE_SYNCED
    type: Literal["user-profile-synced"] = "user-profile-synced"
    version: Literal[1] = 1
    payload: UserProfileSyncedData


class UserProfileUpdatedData(Payload):
    user_id: Id
    display_name: DisplayName | None = None
    bio: Bio | None = None


class UserProfileUpdated(Event):
    topic: ClassVar = topics.USER_PROFILE_UPDATED
    type: Literal["user-profile-updated"] = "user-profile-updated"
    version: Literal[1] = 1
    payload: UserProfileUpdatedData


class FollowData(Payload):
    follower_id: Id
    followee_id: Id


class UserFollowed(Event):
    topic: ClassVar = topics.USER_FOLLOWED
    type: Literal["user-followed"] = "user-followed"
    version: Literal[1] = 1
    payload: FollowData


class UserUnfollowed(Event):
    topic: ClassVar = topics.USER_UNFOLLOWED
    type: Literal["user-unfollowed"] = "user-unfollowed"
    version: Literal[1] = 1
    payload: FollowData


# Interactions: each topic carries both directions of one kind; `type` says which ----------------------------


class InteractionData(Payload):
    user_id: Id
    post_id: Id


class PostLike(Event):
    """`post-liked` / `post-unliked` (topic post-likes)."""

    topic: ClassVar = topics.POST_LIKES
    type: Literal["post-liked", "post-unliked"] = "post-liked"
    version: Literal[1] = 1
    payload: InteractionData


class PostRepost(Event):
    """`post-reposted` / `post-unreposted` (topic post-reposts)."""

    topic: ClassVar = topics.POST_REPOSTS
    type: Literal["post-reposted", "post-unreposted"] = "post-reposted"
    version: Literal[1] = 1
    payload: InteractionData


class PostBookmark(Event):
    """`post-bookmarked` / `post-unbookmarked` (topic post-bookmarks)."""

    topic: ClassVar = topics.POST_BOOKMARKS
    type: Literal["post-bookmarked", "post-unbookmarked"] = "post-bookmarked"
    version: Literal[1] = 1
    payload: InteractionData


# Mutes and blocks: each topic carries both directions of one kind; `type` says which ---------------------------


class RelationData(Payload):
    user_id: Id  # who mutes or blocks
    target_id: Id  # whom


class UserMute(Event):
    """`user-muted` / `user-unmuted` (topic user-mutes)."""

    topic: ClassVar = topics.USER_MUTES
    type: Literal["user-muted", "user-unmuted"] = "user-muted"
    version: Literal[1] = 1
    payload: RelationData


class UserBlock(Event):
    """`user-blocked` / `user-unblocked` (topic user-blocks)."""

    topic: ClassVar = topics.USER_BLOCKS
    type: Literal["user-blocked", "user-unblocked"] = "user-blocked"
    version: Literal[1] = 1
    payload: RelationData


# Moderation ------------------------------------------------------------------------------------------------


class TrendingModeratedData(Payload):
    target: Annotated[str, StringConstraints(min_length=2, max_length=100)]  # "#tag" or "@handle"
    hidden: bool


class TrendingModerated(Event):
    topic: ClassVar = topics.TRENDING_MODERATED
    type: Literal["trending-moderated"] = "trending-moderated"
    version: Literal[1] = 1
    payload: TrendingModeratedData


ReportReason = Literal["spam", "abuse", "illegal", "other"]
ReportAction = Literal["takedown", "dismiss", "suspend"]


class ReportFiledData(Payload):
    report_id: Id
    reporter_id: Id
    post_id: Id | None = None  # the post reported, or None for an account
    user_id: Id  # the account reported (the post's author for a post)
    reason: ReportReason
    comment: Annotated[str, StringConstraints(max_length=1000, pattern=r"^[^\x00]*$")] = ""


class ReportFiled(Event):
    topic: ClassVar = topics.REPORTS
    type: Literal["report-filed"] = "report-filed"
    version: Literal[1] = 1
    payload: ReportFiledData


class ReportResolvedData(Payload):
    report_id: Id
    action: ReportAction
    note: Annotated[str, StringConstraints(max_length=1000, pattern=r"^[^\x00]*$")] = ""
    post_id: Id | None = None  # what the decision acts on: the post taken down, the account suspended
    user_id: Id


class ReportResolved(Event):
    """An operator's decision on a report (`chirp reports resolve`). A takedown or a suspension also publishes a
    moderated `post-deleted` per post it hides, so every read model drops them as it drops deleted posts."""

    topic: ClassVar = topics.REPORT_DECISIONS
    type: Literal["report-resolved"] = "report-resolved"
    version: Literal[1] = 1
    payload: ReportResolvedData


# Notifications ---------------------------------------------------------------------------------------------


class NotificationsReadData(Payload):
    user_id: Id
    up_to: Id | None = None  # the item the reader marked read up to; None: all of them
    up_to_at: datetime  # that item's time (or the moment of "all"): every item at or before it is read


class NotificationsRead(Event):
    topic: ClassVar = topics.NOTIFICATIONS_READ
    type: Literal["notifications-read"] = "notifications-read"
    version: Literal[1] = 1
    payload: NotificationsReadData


# Accounts ------------------------------------------------------------------------------------------------


class AccountDeletedData(Payload):
    user_id: Id


class AccountDeleted(Event):
    """`DELETE /api/me`: the account and everything it made leave every read model; its keys are deleted after
    `erasure_delay_s` (docs/erasure.md)."""

    topic: ClassVar = topics.ACCOUNT_DELETED
    type: Literal["account-deleted"] = "account-deleted"
    version: Literal[1] = 1
    payload: AccountDeletedData


ALL_EVENTS: tuple[type[Event], ...] = (
    PostCreated,
    PostParsed,
    PostDeleted,
    UserRegistered,
    UserProfileSynced,
    UserProfileUpdated,
    UserFollowed,
    UserUnfollowed,
    TrendingModerated,
    NotificationsRead,
    PostLike,
    PostRepost,
    PostBookmark,
    AccountDeleted,
    UserMute,
    UserBlock,
    ReportFiled,
    ReportResolved,
)
BY_TYPE: dict[str, type[Event]] = {
    name: cls for cls in ALL_EVENTS for name in get_args(cls.model_fields["type"].annotation)
}
BY_TOPIC: dict[str, type[Event]] = {cls.topic.name: cls for cls in ALL_EVENTS}
