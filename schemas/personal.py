"""What in an event is personal, and which erasure keys an event belongs to (docs/erasure.md).

Every key is named by what deleting it erases: `u:<user id>` (a person's profile fields and everything they did) and
`p:<post id>` (one post's content). An event *belongs to* the keys `bound_keys` names: once any of them is erased,
every consumer skips the event, so a replay rebuilds as if it had never been written. Its personal fields (`SEALED`)
are encrypted with the first of them, so once that key is gone they are unreadable in the log itself.
"""

from __future__ import annotations

from schemas.events import (
    AccountDeleted,
    Event,
    NotificationsRead,
    PostBookmark,
    PostCreated,
    PostDeleted,
    PostLike,
    PostParsed,
    PostRepost,
    ReportFiled,
    UserBlock,
    UserFollowed,
    UserMute,
    UserProfileSynced,
    UserProfileUpdated,
    UserRegistered,
    UserUnfollowed,
)

USER = "u:"
POST = "p:"

# Payload fields encrypted with the event's first key (the others stay in clear: ids, times, flags).
SEALED: dict[type[Event], tuple[str, ...]] = {
    PostCreated: ("body",),
    PostParsed: ("body", "html", "text", "hashtags", "mentions", "links"),
    UserRegistered: ("github_id", "handle", "display_name", "avatar_url"),
    UserProfileSynced: ("handle", "display_name", "avatar_url"),
    UserProfileUpdated: ("display_name", "bio"),
    ReportFiled: ("comment",),
}


def user_key(user_id: str) -> str:
    return USER + user_id


def post_key(post_id: str) -> str:
    return POST + post_id


def bound_keys(event: Event) -> tuple[str, ...]:
    """The keys `event` belongs to, the sealing key first (empty: the event is never erased, e.g. moderation)."""
    data = event.payload
    match event:
        case PostCreated() | PostParsed() | PostDeleted():
            return post_key(data.post_id), user_key(data.author_id)
        case UserRegistered() | UserProfileSynced() | UserProfileUpdated() | NotificationsRead() | AccountDeleted():
            return (user_key(data.user_id),)
        case UserFollowed() | UserUnfollowed():
            return user_key(data.follower_id), user_key(data.followee_id)
        case PostLike() | PostRepost() | PostBookmark():
            return user_key(data.user_id), post_key(data.post_id)
        case UserMute() | UserBlock():
            return user_key(data.user_id), user_key(data.target_id)
        case ReportFiled():  # the reporter's: reports about an account outlive it (the operators' record)
            return (user_key(data.reporter_id),)
    return ()


def owner(key_id: str, event: Event) -> str:
    """The user whose erasure deletes `key_id` (a post key belongs to the post's author)."""
    if key_id.startswith(USER):
        return key_id.removeprefix(USER)
    return str(getattr(event.payload, "author_id", ""))
