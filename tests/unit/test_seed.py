"""The demo data generator: deterministic, valid events, and the distributions it promises."""

from __future__ import annotations

from collections import Counter
from statistics import median

from domain.markdown import render_post
from ops.seed import generate
from schemas.events import PostCreated, UserFollowed, UserRegistered


def test_same_seed_same_events_other_seed_other_events() -> None:
    first = [e.model_dump_json() for e in generate(50, 200, seed=3)]
    again = [e.model_dump_json() for e in generate(50, 200, seed=3)]
    other = [e.model_dump_json() for e in generate(50, 200, seed=4)]
    assert first == again
    assert first != other


def test_users_then_follows_then_posts_all_referring_to_registered_users() -> None:
    events = list(generate(300, 1000, seed=1))
    kinds = [type(e) for e in events]
    assert kinds == sorted(kinds, key=[UserRegistered, UserFollowed, PostCreated].index)
    users = {e.payload.user_id for e in events if isinstance(e, UserRegistered)}
    assert len(users) == 300
    assert len({e.payload.handle.lower() for e in events if isinstance(e, UserRegistered)}) == 300
    follows = [e.payload for e in events if isinstance(e, UserFollowed)]
    assert all(f.follower_id in users and f.followee_id in users and f.follower_id != f.followee_id for f in follows)
    assert len({(f.follower_id, f.followee_id) for f in follows}) == len(follows), "no duplicate follow"
    posts = [e for e in events if isinstance(e, PostCreated)]
    assert len(posts) == 1000 and all(p.payload.author_id in users for p in posts)
    ids = [p.payload.post_id for p in posts]
    assert ids == sorted(ids), "post ids are ULIDs in creation order"
    known = set(ids)
    assert all(p.payload.reply_to in known for p in posts if p.payload.reply_to)


def test_posts_are_200_to_280_chars_with_zipf_tags_and_links_in_30_percent() -> None:
    posts = [e.payload for e in generate(200, 4000, seed=2) if isinstance(e, PostCreated)]
    assert all(200 <= len(p.body) <= 280 for p in posts)
    rendered = [render_post(p.body) for p in posts]
    tags = Counter(t for r in rendered for t in r.hashtags)
    per_post = Counter(len(r.hashtags) for r in rendered)
    assert set(per_post) <= {0, 1, 2, 3} and per_post[0] and per_post[3]
    ranked = [n for _, n in tags.most_common()]
    assert ranked[0] > 5 * ranked[len(ranked) // 2], "a few tags dominate (Zipf), most are rare"
    with_link = sum(1 for p in posts if "](https://" in p.body) / len(posts)
    assert 0.25 < with_link < 0.35
    assert any("**" in p.body for p in posts) and any("`" in p.body for p in posts)
    assert any(r.mentions for r in rendered)


def test_follower_counts_are_log_normal_with_a_few_large_accounts() -> None:
    events = list(generate(12_000, 0, seed=5))
    followers = Counter(e.payload.followee_id for e in events if isinstance(e, UserFollowed))
    users = [e.payload.user_id for e in events if isinstance(e, UserRegistered)]
    counts = sorted((followers.get(u, 0) for u in users), reverse=True)
    assert all(10_000 <= c <= 11_999 for c in counts[:3]), counts[:5]
    assert counts[3] < 2_000
    assert 3 <= median(counts) <= 15
