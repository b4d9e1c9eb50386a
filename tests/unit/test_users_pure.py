"""Pure parts of profiles, follows and timelines: input validation, event mapping, dedup, fan-out and paging."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from consumers.timelines import plan_fanout, with_recent
from consumers.users import follow_change
from gateway.errors import InvalidInput
from gateway.routes.users import profile_edit
from schemas.events import (
    FollowData,
    UserFollowed,
    UserProfileSynced,
    UserProfileSyncedData,
    UserProfileUpdated,
    UserProfileUpdatedData,
    UserRegistered,
    UserRegisteredData,
    UserUnfollowed,
)
from store.timelines import (
    RepostChange,
    entry_of,
    followed,
    member,
    newest_reposts,
    pair_state,
    post_id_of,
    repost_key,
    repost_member,
    via_of,
)
from store.users import FollowChange, ProfileChange, newest_per_pair

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_profile_edit_trims_and_keeps_only_what_is_sent() -> None:
    assert profile_edit({"display_name": "  Ada  "}) == {"display_name": "Ada"}
    assert profile_edit({"bio": " line one\r\nline two "}) == {"bio": "line one\nline two"}
    assert profile_edit({"bio": ""}) == {"bio": ""}
    assert profile_edit({"display_name": "é" * 50, "bio": "b" * 160}) == {"display_name": "é" * 50, "bio": "b" * 160}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body"),
        ({"display_name": " "}, "display_name"),
        ({"display_name": "x" * 51}, "display_name"),
        ({"display_name": "tab\there"}, "display_name"),
        ({"display_name": "a\u202eb"}, "display_name"),
        ({"display_name": None}, "display_name"),
        ({"bio": "b" * 161}, "bio"),
        ({"bio": "esc\x1b[31m"}, "bio"),
        ({"bio": ["list"]}, "bio"),
        ({"avatar_url": "x"}, "avatar_url"),
    ],
)
def test_profile_edit_names_the_field_at_fault(body: dict, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        profile_edit(body)
    assert caught.value.field == field


def test_each_profile_event_sets_only_its_fields() -> None:
    reg = UserRegistered(
        occurred_at=T0, payload=UserRegisteredData(user_id="u", github_id=7, handle="ada", display_name="Ada")
    )
    change = ProfileChange.of(reg)
    assert (change.handle, change.display_name, change.avatar_url, change.bio) == ("ada", "Ada", "", None)
    assert change.registered and change.github_id == 7 and change.at == T0
    sync = ProfileChange.of(UserProfileSynced(payload=UserProfileSyncedData(user_id="u", handle="ada2")))
    assert not sync.registered and sync.github_id is None and sync.bio is None and sync.handle == "ada2"
    edit = ProfileChange.of(UserProfileUpdated(payload=UserProfileUpdatedData(user_id="u", bio="hi")))
    assert (edit.handle, edit.display_name, edit.avatar_url, edit.bio) == (None, None, None, "hi")


def test_follow_events_map_to_pair_states() -> None:
    data = FollowData(follower_id="a", followee_id="b")
    assert follow_change(UserFollowed(occurred_at=T0, payload=data)) == FollowChange("a", "b", True, T0)
    assert follow_change(UserUnfollowed(occurred_at=T0, payload=data)) == FollowChange("a", "b", False, T0)


def test_newest_per_pair_keeps_the_newest_and_drops_self_follows() -> None:
    t = [T0 + timedelta(seconds=i) for i in range(3)]
    changes = [
        FollowChange("a", "b", True, t[2]),
        FollowChange("a", "b", False, t[1]),
        FollowChange("a", "b", True, t[2]),
        FollowChange("a", "a", True, t[0]),
        FollowChange("c", "b", False, t[0]),
    ]
    assert newest_per_pair(changes) == [FollowChange("a", "b", True, t[2]), FollowChange("c", "b", False, t[0])]
    tie = [FollowChange("a", "b", True, t[0]), FollowChange("a", "b", False, t[0])]
    assert newest_per_pair(tie) == newest_per_pair(tie[::-1]) == [tie[0]], "a follow wins a tie"


def test_fanout_plan_skips_followers_of_big_authors_but_not_the_author() -> None:
    followers = {"small": ["f1", "f2"], "big": ["f1", "f2", "f3"]}
    posts = [(member(p, a), a) for p, a in (("p1", "small"), ("p2", "big"), ("p3", "loner"), ("p4", "known"))]
    plan = plan_fanout(posts, followers, {"known"}, max_followers=2)
    assert plan.big == {"big", "known"} and plan.small == {"small", "loner"}
    assert dict(plan.timelines) == {
        "small": ["p1:small"],
        "f1": ["p1:small"],
        "f2": ["p1:small"],
        "big": ["p2:big"],
        "loner": ["p3:loner"],
        "known": ["p4:known"],
    }


def test_fanout_plan_reaches_only_the_timelines_named() -> None:
    followers = {"small": ["f1", "f2"], "big": ["f1", "f2", "f3"]}
    plan = plan_fanout(
        [("p1:small", "small"), ("p2:big", "big")], followers, set(), max_followers=2, reach={"f2", "big"}
    )
    assert dict(plan.timelines) == {"f2": ["p1:small"], "big": ["p2:big"]}
    assert plan.big == {"big"} and plan.small == {"small"}, "who is big does not depend on who is reached"


def test_members_carry_the_author_and_sort_like_their_ids() -> None:
    assert post_id_of(member("01ABC", "dev-x")) == "01ABC"
    assert sorted([member("01B", "z"), member("01A", "zz"), "~"]) == ["01A:zz", "01B:z", "~"]
    later = T0 + timedelta(microseconds=1)
    assert pair_state(T0, True) < pair_state(later, False) < pair_state(T0 + timedelta(days=400), False)
    assert pair_state(T0, False) < pair_state(T0, True), "at the same instant, a follow wins"


def test_followed_takes_the_newer_of_the_projection_and_the_events() -> None:
    t = [T0 + timedelta(seconds=i) for i in range(3)]
    projected = {
        "a": (pair_state(t[1], True), 10),
        "b": (pair_state(t[1], True), 20),
        "c": (pair_state(t[2], False), 0),
    }
    applied = {"a": pair_state(t[2], False), "b": pair_state(t[0], False), "d": pair_state(t[0], True)}
    assert followed(projected, applied) == {"b": 20, "d": 0}


def test_recent_follow_events_correct_the_projected_followers() -> None:
    followers = {"x": ["f1", "f2"], "y": []}
    recent = {"x": {"f2": False, "f3": True, "f1": True}, "y": {"f4": False}}
    assert with_recent(followers, recent) == {"x": ["f1", "f3"], "y": []}


def test_repost_members_sort_at_the_repost_and_name_the_reposter_and_the_post() -> None:
    post_id = repost_key("01M97XTJ3M9HA75WNT65EX8PM7", T0)  # a post written at T0
    later = T0 + timedelta(days=3)
    value = repost_member(post_id, "author", "reposter", later)
    assert value == f"{repost_key(post_id, later)}:reposter:{post_id}:author"
    assert (via_of(value), post_id_of(value)) == ("reposter", post_id)
    assert entry_of(value).post_id == post_id and entry_of(value).reposter == "reposter"
    assert entry_of(member(post_id, "author")).reposter is None and via_of(member(post_id, "author")) == "author"
    newer = repost_member(post_id, "author", "other", later + timedelta(milliseconds=1))
    written_since = repost_key("01M97XTJ3M9HA75WNT65EX8PM8", T0 + timedelta(days=1))
    assert sorted([newer, member(written_since, "x"), value]) == [member(written_since, "x"), value, newer]


def test_the_newest_repost_or_unrepost_of_each_user_and_post_wins() -> None:
    changes = [
        RepostChange("a", "p", True, T0),
        RepostChange("a", "p", False, T0 + timedelta(seconds=1)),
        RepostChange("b", "p", False, T0),
        RepostChange("b", "p", True, T0),
    ]
    assert newest_reposts(changes) == newest_reposts(changes[::-1]) == [changes[1], changes[3]]
