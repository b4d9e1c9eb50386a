"""Keys that scripts and transactions take together share a Redis Cluster slot; fan-out calls are cut by slot."""

from __future__ import annotations

from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from chirp.redis_client import slot_chunks
from store import notifications, relations, suggestions, timelines
from store.trending import DEFAULT_PREFIX, RedisTrending


def slot(key: str) -> int:
    return key_slot(key.encode())


def test_a_users_keys_of_every_model_share_one_slot() -> None:
    u = "01M97M59YGH2KAFD4DA6KQZN4W"
    keys = [
        timelines.timeline_key(u),
        timelines.big_key(u),
        timelines.pairs_key(u),
        timelines.recent_key(u),
        timelines.fresh_key(u),
        timelines.lock_key(u),
        *relations.side_keys(u),
        notifications.items_key(u),
        notifications.unread_key(u),
        notifications.item_key(u, "i1"),
        notifications.actors_key(u, "i1"),
        notifications.readmark_key(u),
        suggestions.rank_key(u),
        suggestions.via_key(u, "c"),
        suggestions.edge_key(u, "c"),
    ]
    assert {slot(k) for k in keys} == {slot(relations.hidden_key(u))}
    assert slot(timelines.timeline_key("someone-else")) != slot(timelines.timeline_key(u))


def test_trending_is_one_slot_whatever_the_subject() -> None:
    counts = RedisTrending.__new__(RedisTrending)  # key names only: no client
    counts.p = DEFAULT_PREFIX
    keys = [counts.now_key, counts.version_key, counts.post_key("p1"), counts.active_key("t", "m", 5)]
    keys += [counts.contributions_key("t", "h", 7, "cats"), counts.actors_key("u", "m", 9, "u:someone")]
    assert len({slot(k) for k in keys}) == 1


def test_fan_out_chunks_hold_one_slot_each_on_a_cluster_and_keep_order_on_one_server() -> None:
    users = [f"user-{i}" for i in range(2000)]
    plain = list(slot_chunks(object(), users, timelines.timeline_key, 500))
    assert plain == [users[i : i + 500] for i in range(0, 2000, 500)]
    cluster = RedisCluster.__new__(RedisCluster)  # only its type matters here
    chunks = list(slot_chunks(cluster, users, timelines.timeline_key, 3))
    assert sorted(u for c in chunks for u in c) == sorted(users)
    assert all(len({slot(timelines.timeline_key(u)) for u in c}) == 1 and len(c) <= 3 for c in chunks)
