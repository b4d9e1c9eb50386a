"""Trending scoring (pure): windows and buckets, the score against the baseline, the order, moderation keys."""

from __future__ import annotations

import itertools

import pytest

from store.trending import Follow, PostActivity, moderation_target, moderation_value
from store.trending_score import SPARK_POINTS, WINDOWS, Ranked, rank, score, slices

T0 = 1_735_732_800.0  # 2025-01-01 12:00:00 UTC, a whole hour


def test_steady_tag_scores_nothing_however_busy() -> None:
    assert score(500, 500) == 0.0
    assert score(480, 500) == 0.0


def test_burst_of_new_people_scores_high() -> None:
    assert score(20, 0) == 361.0  # (20 - 1)^2 / 1
    assert score(20, 0) > score(600, 500)


def test_one_person_never_scores() -> None:
    assert score(1, 0) == 0.0


def test_rank_orders_by_score_then_name_and_drops_what_does_not_trend() -> None:
    items = [Ranked("b", 5, 9.0), Ranked("a", 5, 9.0), Ranked("c", 9, 30.0), Ranked("z", 1, 50.0), Ranked("y", 4, 0.0)]
    assert [r.name for r in rank(items)] == ["c", "a", "b"]


def test_window_buckets_and_baseline() -> None:
    w = WINDOWS["15m"]
    now = T0 + 59  # still the 12:00 minute
    current, baseline = w.buckets(now), w.buckets(now, baseline=True)
    assert len(current) == len(baseline) == 15
    assert current[-1] == int(T0 // 60) and baseline[-1] == current[0] - 1
    day = WINDOWS["24h"]
    assert day.buckets(now)[-1] == int(T0 // 3600) and len(day.buckets(now)) == 24


@pytest.mark.parametrize("name", list(WINDOWS))
def test_sparkline_points_cover_the_end_of_the_window(name: str) -> None:
    w = WINDOWS[name]
    points = slices(w, T0)
    assert len(points) == SPARK_POINTS
    assert points[-1][-1] == w.bucket(T0)
    assert all(len(p) == w.per_point for p in points)
    assert all(a[-1] + 1 == b[0] for a, b in itertools.pairwise(points))
    assert points[0][0] >= w.buckets(T0)[0]


@pytest.mark.parametrize(
    ("raw", "target"),
    [("#Rust", "#rust"), ("Rust", "#rust"), ("#ÉTÉ", "#été"), ("@Alice-B", "@alice-b"), (" @bob ", "@bob")],
)
def test_moderation_targets(raw: str, target: str) -> None:
    assert moderation_target(raw) == target


@pytest.mark.parametrize("raw", ["", "#", "@", "#12", "@-x", "two words", "#a-b", "@" + "x" * 40])
def test_bad_moderation_targets(raw: str) -> None:
    assert moderation_target(raw) is None


def test_newest_moderation_wins_by_string_order() -> None:
    older, newer = moderation_value(9_000_000, "zz", True), moderation_value(10_000_000, "aa", False)
    assert older < newer
    assert moderation_value(10_000_000, "b", True) > moderation_value(10_000_000, "a", False)


def test_post_contributions() -> None:
    post = PostActivity("p1", "u1", T0, ("rust", "kafka"), ("bob",))
    found = {(c.kind, c.subject, c.field, c.actor) for c in post.contributions()}
    assert found == {
        ("t", "rust", "p1", "u1"),
        ("t", "kafka", "p1", "u1"),
        ("u", "u:u1", "p:p1", "u1"),
        ("u", "h:bob", "m:p1", "u1"),
    }
    assert PostActivity.from_record("p1", post.record()) == post


def test_follow_counts_the_follower_once() -> None:
    c = Follow("f1", "u2", T0).contribution()
    assert (c.subject, c.field, c.actor) == ("u:u2", "f:f1", "f1")
