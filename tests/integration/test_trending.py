"""Trending on the real broker, Redis and PostgreSQL: bursts rise, steady tags and spam do not, deletes and hides hold.

Pipeline tests publish events dated a little before the wall clock (the live "now" is the newest event time seen,
shared with every other test) and read `GET /api/trending`. Replay tests run the consumer's handlers in-process over
the same events into a fresh key prefix and compare the Redis state key by key.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import asyncpg
import httpx
import pytest
import redis as sync_redis
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer

from chirp.settings import Settings
from consumers import trending
from consumers.runtime import Context
from ops import replay
from producers.broker import Publisher, ensure_topics
from schemas import topics
from schemas.events import (
    Event,
    FollowData,
    PostParsed,
    TrendingModerated,
    TrendingModeratedData,
    UserFollowed,
    new_id,
)
from store.trending import DEFAULT_PREFIX, RedisTrending
from tests.conftest import eventually, replays_redis
from tests.integration.explore_support import ago, caught_up, deleted, drop, dump, parsed, registered
from tests.scratch import scratch_id

Pipeline = subprocess.Popen[bytes]


@pytest.fixture
async def fresh(
    settings: Settings, pg: asyncpg.Pool, redis_client: aioredis.Redis, publisher: Publisher
) -> AsyncIterator[Any]:
    """A factory of contexts whose trending keys live under a new prefix (dropped afterwards)."""
    prefixes: list[str] = []

    def make() -> Context:
        prefixes.append(f"test-trending:{{{new_id()}}}:")  # its own slot on a cluster
        return Context(settings, pg, redis_client, publisher, trending_prefix=prefixes[-1])

    yield make
    for prefix in prefixes:
        await drop(redis_client, prefix)


def tag() -> str:
    return "tr" + "".join(random.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(10))


def burst(name: str, people: int, at: datetime) -> list[PostParsed]:
    """`people` different authors posting `#name` within the same minute."""
    return [
        parsed(f"a-{new_id()}", f"#{name} now", tags=(name,), at=at + timedelta(seconds=i % 20)) for i in range(people)
    ]


def steady(name: str, authors: int, minutes: int, end: datetime) -> list[PostParsed]:
    """The same `authors` posting `#name` every minute for `minutes` minutes up to `end`."""
    ids = [f"s-{new_id()}" for _ in range(authors)]
    return [
        parsed(a, f"#{name} as usual", tags=(name,), at=end - timedelta(minutes=m)) for m in range(minutes) for a in ids
    ]


def moderated(target: str, hidden: bool, at: datetime | None = None) -> TrendingModerated:
    data = TrendingModeratedData(target=target, hidden=hidden)
    return TrendingModerated(occurred_at=at or datetime.now(UTC), payload=data)


async def ranking(client: httpx.AsyncClient, window: str = "15m") -> dict[str, Any]:
    response = await client.get("/api/trending", params={"window": window, "limit": "50"})
    assert response.status_code == 200, response.text
    return response.json()


def tags_of(body: dict[str, Any]) -> list[str]:
    return [h["tag"] for h in body["hashtags"]]


HANDLERS = {
    "post-parsed": trending.on_post_parsed,
    "post-deleted": trending.on_post_deleted,
    "user-followed": trending.on_user_followed,
}


async def apply(ctx: Context, events: list[Event]) -> None:
    """Run the trending consumer's handlers over `events`, one batch per run of the same type."""
    i = 0
    while i < len(events):
        j = i
        while j < len(events) and events[j].type == events[i].type:
            j += 1
        if events[i].type == "trending-moderated":
            for event in events[i:j]:
                await trending.on_trending_moderated(event, ctx)
        else:
            await HANDLERS[events[i].type](events[i:j], ctx)
        i = j


# Live pipeline ------------------------------------------------------------------------------------------------


async def test_burst_rises_above_a_steady_tag(
    pipeline: Pipeline, publisher: Publisher, client: httpx.AsyncClient
) -> None:
    busy, new = tag(), tag()
    await publisher.publish_many([*steady(busy, 5, 30, ago(seconds=30)), *burst(new, 12, ago(seconds=25))])

    body = await eventually(lambda: ranking(client), until=lambda b: new in tags_of(b), timeout=60)
    item = body["hashtags"][tags_of(body).index(new)]
    assert item["count"] == 12 and sum(item["sparkline"]) == 12 and len(item["sparkline"]) == 12
    assert busy not in tags_of(body)[: tags_of(body).index(new)]


async def test_one_person_repeating_a_tag_does_not_trend(
    pipeline: Pipeline, settings: Settings, publisher: Publisher, client: httpx.AsyncClient
) -> None:
    spam, sentinel = tag(), tag()
    author = f"spammer-{new_id()}"
    await publisher.publish_many(
        [parsed(author, f"#{spam} buy", tags=(spam,), at=ago(seconds=40 - i)) for i in range(30)]
    )
    await caught_up(settings, settings.group("trending"), [topics.POST_PARSED.name])
    await publisher.publish_many(burst(sentinel, 4, ago(seconds=10)))  # a ranking showing it was made after the spam

    await eventually(lambda: ranking(client), until=lambda b: sentinel in tags_of(b), timeout=60)
    for window in ("15m", "1h", "24h"):
        assert spam not in tags_of(await ranking(client, window))


async def test_deleted_posts_leave_trending(
    pipeline: Pipeline, publisher: Publisher, client: httpx.AsyncClient
) -> None:
    name = tag()
    posts = burst(name, 6, ago(seconds=30))
    await publisher.publish_many(posts)
    await eventually(lambda: ranking(client), until=lambda b: name in tags_of(b), timeout=60)

    await publisher.publish_many([deleted(p) for p in posts[:5]])
    await eventually(lambda: ranking(client), until=lambda b: name not in tags_of(b), timeout=60)


async def test_users_trend_on_mentions_and_new_followers(
    pipeline: Pipeline, publisher: Publisher, pg: asyncpg.Pool, client: httpx.AsyncClient
) -> None:
    star = registered("star")
    await publisher.publish(star)
    sql = "SELECT count(*) FROM users WHERE user_id = $1 AND handle = $2"
    await eventually(lambda: pg.fetchval(sql, star.payload.user_id, star.payload.handle), timeout=60)
    handle, star_id = star.payload.handle, star.payload.user_id
    mentions = [parsed(f"fan-{new_id()}", f"hi @{handle}", mentions=(handle,), at=ago(seconds=20)) for _ in range(5)]
    follows = [
        UserFollowed(occurred_at=ago(seconds=15), payload=FollowData(follower_id=f"f-{new_id()}", followee_id=star_id))
        for _ in range(3)
    ]
    await publisher.publish_many([*mentions, *follows])

    def listed(body: dict[str, Any]) -> list[dict[str, Any]]:
        return [u for u in body["users"] if u["handle"] == handle]

    body = await eventually(
        lambda: ranking(client), until=lambda b: listed(b) and listed(b)[0]["count"] == 8, timeout=60
    )
    assert listed(body)[0]["score"] > 0


@replays_redis
async def test_the_ranking_a_replay_swaps_in_is_complete(
    settings: Settings,
    publisher: Publisher,
    pg: asyncpg.Pool,
    redis_client: aioredis.Redis,
    client: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`chirp replay trending` while readers poll `GET /api/trending`: the rankings swapped in were computed from
    the rebuilt counts, so no answer is empty (or lacks the trending tag) at any moment of the replay."""

    # No refresher pass in the replay (as when its last pass predates the events): the swap alone must bring the
    # rankings of the rebuilt counts.
    async def no_refresher(counts: RedisTrending, pool: asyncpg.Pool | None) -> None:
        return None

    monkeypatch.setattr(trending, "refresh_forever", no_refresher)
    name = tag()
    await publisher.publish_many(burst(name, 6, ago(seconds=20)))
    await replay.replay(settings, "trending")  # the live model, as a replay builds it
    await RedisTrending(redis_client).refresh(pg)  # (a live refresher's pass may land after it: it repairs itself)
    await eventually(lambda: ranking(client), until=lambda b: name in tags_of(b))

    seen: list[list[str]] = []
    done = asyncio.Event()

    async def read_throughout() -> None:
        while not done.is_set():
            seen.append(tags_of(await ranking(client)))
            await asyncio.sleep(0.005)

    reader = asyncio.create_task(read_throughout())
    try:
        await replay.replay(settings, "trending")
        after = len(seen)  # and the answers just after the swap, before a live refresher's pass could repair them
        await eventually(lambda: asyncio.sleep(0, len(seen)), until=lambda n: n >= after + 20)
    finally:
        done.set()
        await reader
    assert len(seen) > 20
    missing = [tags for tags in seen if name not in tags]
    assert not missing, f"{len(missing)} of {len(seen)} answers lacked #{name} (first: {missing[0]})"


async def test_hidden_tag_stays_hidden_after_a_replay(
    pipeline: Pipeline, publisher: Publisher, client: httpx.AsyncClient, redis_client: aioredis.Redis, fresh: Any
) -> None:
    hidden, control = tag(), tag()
    events: list[Event] = [*burst(hidden, 6, ago(seconds=30)), *burst(control, 5, ago(seconds=30))]
    await publisher.publish_many(events)
    await eventually(lambda: ranking(client), until=lambda b: hidden in tags_of(b), timeout=60)
    hide = moderated(f"#{hidden.upper()}", True)
    await publisher.publish(hide)
    body = await eventually(lambda: ranking(client), until=lambda b: hidden not in tags_of(b), timeout=60)
    assert control in tags_of(body)

    ctx = fresh()  # the replay: the same events, the consumer's own handlers, a fresh key prefix
    replayed = [*events, hide]
    await apply(ctx, replayed)
    counts = RedisTrending(redis_client, ctx.trending_prefix)
    result = await counts.refresh(ctx.pg)
    assert control in tags_of(result["15m"]) and hidden not in tags_of(result["15m"])

    before = await dump(redis_client, ctx.trending_prefix)
    await apply(ctx, replayed)  # redelivery of everything
    await counts.refresh(ctx.pg)
    assert await dump(redis_client, ctx.trending_prefix) == before

    await apply(ctx, [moderated(f"#{hidden}", False, at=hide.occurred_at + timedelta(seconds=1))])
    assert hidden in tags_of((await counts.refresh(ctx.pg))["15m"])


@pytest.mark.parametrize(
    ("params", "field"), [({"window": "2h"}, "window"), ({"limit": "0"}, "limit"), ({"limit": "51"}, "limit")]
)
async def test_bad_parameters_are_422(client: httpx.AsyncClient, params: dict[str, str], field: str) -> None:
    for _ in range(2):  # the gateway remembers query strings that validated, never one that did not
        response = await client.get("/api/trending", params=params)
        assert response.status_code == 422
        assert response.json()["error"]["field"] == field


async def test_limit_cuts_both_lists(client: httpx.AsyncClient) -> None:
    body = (await client.get("/api/trending", params={"window": "24h", "limit": "1"})).json()
    assert set(body) == {"hashtags", "users"} and len(body["hashtags"]) <= 1 and len(body["users"]) <= 1


# Replays into a fresh prefix, synthetic times ------------------------------------------------------------------

T0 = datetime(2025, 3, 1, 12, 0, 30, tzinfo=UTC)


async def test_synthetic_times_rank_as_live_and_order_does_not_matter(
    redis_client: aioredis.Redis, pg: asyncpg.Pool, fresh: Any
) -> None:
    busy, new, spam, removed = tag(), tag(), tag(), tag()
    gone = burst(removed, 4, T0 - timedelta(minutes=3))
    events: list[Event] = [
        *steady(busy, 6, 40, T0),
        *burst(new, 10, T0 - timedelta(seconds=20)),
        *[parsed("one-spammer", f"#{spam}", tags=(spam,), at=T0 - timedelta(seconds=i)) for i in range(25)],
        *gone,
        *[deleted(p, at=T0) for p in gone],
        UserFollowed(occurred_at=T0 - timedelta(minutes=1), payload=FollowData(follower_id="f1", followee_id="u1")),
        moderated(f"#{busy}", True, at=T0 - timedelta(minutes=5)),
        moderated(f"#{busy}", False, at=T0 - timedelta(minutes=4)),
    ]
    in_order = fresh()
    await apply(in_order, events)
    result = await RedisTrending(redis_client, in_order.trending_prefix).refresh(pg)
    assert tags_of(result["15m"])[0] == new  # on top, ranked at the newest event time (T0), not the wall clock
    assert result["15m"]["hashtags"][0]["count"] == 10
    assert busy not in tags_of(result["15m"]) and spam not in tags_of(result["15m"])
    assert not set(tags_of(result["24h"])) & {removed, spam}

    shuffled = fresh()
    mixed = events[:]
    random.Random(5).shuffle(mixed)
    await apply(shuffled, mixed)
    again = await RedisTrending(redis_client, shuffled.trending_prefix).refresh(pg)
    assert again == result
    skip = ("version", "ranked", "tmp:")
    assert await dump(redis_client, shuffled.trending_prefix, skip) == await dump(
        redis_client, in_order.trending_prefix, skip
    )


async def test_collection_deletes_buckets_out_of_every_window_and_keeps_the_rankings(
    redis_client: aioredis.Redis, pg: asyncpg.Pool, fresh: Any
) -> None:
    old, recent = tag(), tag()
    history = [parsed(f"h-{new_id()}", f"#{old}", tags=(old,), at=T0 - timedelta(days=d)) for d in (3, 4, 5)]
    ctx = fresh()
    prefix = ctx.trending_prefix
    counts = RedisTrending(redis_client, prefix)
    for event in history[::-1]:  # oldest first, with refresher passes in between, as in a replay
        await apply(ctx, [event])
        await counts.collect()
    await apply(ctx, [*burst(recent, 5, T0 - timedelta(hours=2)), *burst(recent, 3, T0)])
    before = await counts.refresh(pg)

    def buckets(names: Any, res: str) -> list[tuple[int, str]]:
        """(bucket, subject) of the tag buckets of resolution `res`."""
        found = [n.split(":", 4) for n in names if n.startswith(f"t:{res}:")]
        return [(int(bucket), subject) for _, _, bucket, _, subject in found]

    assert {s for _, s in buckets(await dump(redis_client, prefix), "h")} == {old, recent}
    assert await counts.collect() > 0
    names = await dump(redis_client, prefix)
    minute_cutoff = (T0.timestamp() - 3 * 3600) // 60
    assert {s for _, s in buckets(names, "h")} == {recent}, "hour buckets over 50 h behind the newest event are gone"
    assert {s for _, s in buckets(names, "m")} == {recent}
    assert min(b for b, _ in buckets(names, "m")) >= minute_cutoff, "minute buckets of the last 3 hours stay"
    hour_cutoff = (T0.timestamp() - 50 * 3600) // 3600
    active = [n.split(":") for n in names if n.startswith("active:")]
    assert active and all(int(b) >= (minute_cutoff if res == "m" else hour_cutoff) for _, _, res, b in active)
    assert await counts.refresh(pg) == before
    assert await counts.collect() == 0  # nothing new fell out


async def test_a_consumer_starting_on_a_long_history_skips_what_no_window_reads(
    settings: Settings, redis_client: aioredis.Redis, pg: asyncpg.Pool, fresh: Any
) -> None:
    """At start `now` jumps to the newest post at the tail of the log: older posts never reach a bucket, and the
    rankings and buckets are those of a consumer that counted all of them and collected them again."""
    name = tag()
    history = [parsed(f"h-{new_id()}", f"#{name}", tags=(name,), at=T0 - timedelta(hours=h)) for h in range(240, 0, -6)]
    events: list[Event] = [*history, *burst(name, 5, T0)]
    topic = topics.Topic(f"test-trending-tail-{scratch_id()}", key=topics.POST_PARSED.key)
    await ensure_topics(settings, (topic,))
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(topic.name, event.model_dump_json().encode(), key=event.key.encode())
    finally:
        await producer.stop()
    handler = trending.consumer.handlers[topics.POST_PARSED.name]
    reading_it = replace(trending.consumer, handlers={topic.name: replace(handler, topic=topic)})

    skipping, counting = fresh(), fresh()
    await trending.skip_to_tail(skipping, reading_it)
    newest = max(p.payload.created_at for p in events if isinstance(p, PostParsed))
    assert await redis_client.get(f"{skipping.trending_prefix}now") == str(newest.timestamp())
    await apply(skipping, events)
    for event in events:  # with refresher passes in between, as live or in a replay
        await apply(counting, [event])
        await RedisTrending(redis_client, counting.trending_prefix).collect()
    results = []
    for ctx in (skipping, counting):
        counts = RedisTrending(redis_client, ctx.trending_prefix)
        await counts.collect()
        results.append((await counts.refresh(pg), await dump(redis_client, counts.p, ("version", "ranked", "post:"))))
    assert results[0] == results[1]
    assert tags_of(results[0][0]["24h"]) == [name]
    records = [f"{ctx.trending_prefix}post:{history[0].payload.post_id}" for ctx in (skipping, counting)]
    assert [await redis_client.exists(r) for r in records] == [0, 1], "only the consumer that counted it kept it"


def test_cli_hide_and_unhide_are_events_the_consumer_applies(pipeline: Pipeline, settings: Settings) -> None:
    """`chirp trending hide|unhide` publish trending-moderated; the running consumer records the newest decision."""
    from typer.testing import CliRunner

    from ops.trending import trending_app

    name = tag()
    client = (sync_redis.RedisCluster if settings.redis_cluster else sync_redis.Redis).from_url(
        settings.redis_url, decode_responses=True
    )

    def state(expected: str) -> str:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            value = client.hget(f"{DEFAULT_PREFIX}moderation", f"#{name}")
            if value is not None and value.endswith(expected):
                return value
            time.sleep(0.05)
        raise AssertionError(f"#{name} never became {expected!r}")

    runner = CliRunner()
    assert runner.invoke(trending_app, ["hide", f"#{name.upper()}"]).exit_code == 0
    state("|1")
    assert runner.invoke(trending_app, ["unhide", name]).exit_code == 0
    state("|0")
    assert runner.invoke(trending_app, ["hide", "not a tag"]).exit_code == 2
    client.close()


class _RefreshUnderWay:
    """Counts always stale, whose refresh is still running queries when its pool starts closing."""

    def __init__(self) -> None:
        self.started = asyncio.Event()

    async def stale(self) -> bool:
        return True

    async def refresh(self, pg: asyncpg.Pool) -> None:
        self.started.set()
        await pg.fetchval("SELECT pg_sleep(0.3)")
        await pg.fetchval("SELECT 1")  # by now the pool is closing

    async def collect(self) -> None:
        return None


async def test_refresher_ends_quietly_when_its_pool_closes_during_a_refresh(settings: Settings, monkeypatch) -> None:
    """A replay process ends its shadow context while the ranking refresher may be mid-refresh: no failure is
    logged, and the refresher stops."""
    warnings: list[str] = []
    monkeypatch.setattr(trending, "log", SimpleNamespace(warning=lambda event, **_: warnings.append(event)))
    pool = await asyncpg.create_pool(settings.postgres_dsn(), min_size=1, max_size=2)
    counts = _RefreshUnderWay()
    refresher = asyncio.create_task(trending.refresh_forever(counts, pool, every=0.01))  # type: ignore[arg-type]
    await counts.started.wait()
    await pool.close()
    await asyncio.wait_for(refresher, 5)
    assert warnings == []
