"""How a home timeline page is cut from its candidates: the Redis window's members, the big accounts' posts and
their reposts, each source complete only down to its (limit+1)th item."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.routes.timeline import Candidate, cut_page
from store.posts import PostView

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _view(post_id: str) -> PostView:
    return PostView(post_id, "a", "h", "", "", "", "", "", [], [], None, 0, T0)


@pytest.mark.parametrize(
    ("keys", "lower", "limit", "page", "cursor"),
    [
        (["9", "8", "7"], "7", 2, ["9", "8"], "8"),  # more in Redis
        (["9", "8"], "", 2, ["9", "8"], None),  # the end
        (["9", "7"], "7", 2, ["9", "7"], "7"),  # 8 deleted: 7, the lowest fetched, may still be served
        (["9", "5", "4"], "7", 2, ["9"], "9"),  # 8 and 7 deleted; 5 is past Redis' lowest: next page
        ([], "7", 2, [], "7"),  # all deleted: continue below the lowest fetched
        (["9", "6", "5", "4"], "4", 2, ["9", "6"], "6"),  # Redis done, big authors have more
    ],
)
def test_a_page_never_serves_past_what_a_source_returned(keys, lower, limit, page, cursor) -> None:
    candidates: list[Candidate] = [(k, _view(k), None) for k in keys]
    served, after = cut_page(candidates, lower, limit)
    assert [p["id"] for p in served] == page
    assert after == cursor


def test_a_post_shows_once_at_its_newest_place_with_who_reposted_it() -> None:
    card = {"handle": "bob", "display_name": "Bob", "avatar_url": ""}
    post = "01KE34VF000000000000000001"
    repost = "01KE4000000000000000000001"  # the same post, reposted later
    other = "01KE38000000000000000000AB"
    candidates: list[Candidate] = [(post, _view(post), None), (repost, _view(post), card), (other, _view(other), None)]
    served, after = cut_page(candidates, "", 5)
    assert [(p["id"], p.get("reposted_by")) for p in served] == [(post, card), (other, None)]
    assert served[0]["reposted_at"] == datetime(2026, 1, 4, 7, 54, 20, 32000, tzinfo=UTC) and after is None


def test_a_repost_leaves_the_shared_post_object_as_it_was() -> None:
    card = {"handle": "bob", "display_name": "Bob", "avatar_url": ""}
    view = _view("01KE34VF000000000000000002")  # one view, as the timeline's post cache hands it out for seconds
    reposted, _ = cut_page([("01KE4000000000000000000002", view, card)], "", 5)  # in one reader's timeline
    plain, _ = cut_page([(view.id, view, None)], "", 5)  # in another's, who follows its author
    assert reposted[0]["reposted_by"] == card
    assert "reposted_by" not in plain[0] and "reposted_at" not in plain[0]
