"""No good event is lost to a store that is full, out of memory or read-only for a while.

Every consumer runs in its own process against the stack of tests/faults/stack.py. Each test breaks one store,
publishes posts while it is broken, holds the fault `HOLD_S` (longer than the five attempts an event's own fault
gets), repairs it, and then requires every post in every read model (posts, search, timelines, trending, notifications),
every dead-letter topic empty, and the outage announced by the gauge and once by the log.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
import pytest
import redis.asyncio as aioredis
import redis.exceptions
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from chirp.settings import Settings
from consumers.runtime import all_consumers
from ops.services import postgres
from ops.services import redis as redis_service
from producers.broker import Publisher
from schemas import topics
from schemas.events import (
    Event,
    FollowData,
    PostCreated,
    PostCreatedData,
    UserFollowed,
    UserRegistered,
    UserRegisteredData,
    new_id,
)
from store.notifications import items_key
from store.relations import hidden_keys
from store.timelines import PostgresTimelineSource, RedisTimelines, rebuild
from store.trending import DEFAULT_PREFIX
from tests.conftest import eventually
from tests.faults.stack import FaultStack, elapsed, free_port, wire

HOLD_S = 8.0
POSTS_PER_FAULT = 30
CONSUMERS = sorted(c.name for c in all_consumers())


@dataclass
class World:
    """An author, a reader who follows them and is mentioned in every post, and the stack's clients."""

    stack: FaultStack
    pg: asyncpg.Pool
    redis: aioredis.Redis
    publisher: Publisher
    author: str
    reader: str
    reader_handle: str
    dead_before: int = 0  # records in the dead-letter topics when the current fault began

    async def publish(self, event: Event) -> None:
        await self.publisher.publish_raw(self.stack.topic(event.topic), *wire(event))

    async def publish_posts(self, count: int, tag: str) -> list[str]:
        ids = [new_id() for _ in range(count)]
        filler = "All good events survive a broken store. " * 30  # pages fill: the disk-full case needs new ones
        for i, post_id in enumerate(ids):
            body = f"#{tag} post {i} for @{self.reader_handle}. {filler}"
            await self.publish(PostCreated(payload=PostCreatedData(post_id=post_id, author_id=self.author, body=body)))
        return ids

    async def missing(self, ids: list[str]) -> dict[str, int]:
        """How many of `ids` each read model lacks; fails at once when anything was dead-lettered."""
        lost = await dead_letters(self.stack) - self.dead_before
        assert lost == 0, f"{lost} good events were dead-lettered"
        posts = await self.pg.fetch("SELECT post_id FROM posts WHERE post_id = ANY($1) AND deleted_at IS NULL", ids)
        search = await self.pg.fetch("SELECT post_id FROM search_posts WHERE post_id = ANY($1)", ids)
        window = await RedisTimelines(self.redis, self.stack.settings.timeline_length).window(
            self.reader, None, 900, hidden_keys(self.reader)
        )
        timeline = set(window.post_ids if window else ())
        trending = await self.redis.exists(*(f"{DEFAULT_PREFIX}post:{post_id}" for post_id in ids))
        mentions = set(await self.redis.zrange(items_key(self.reader), 0, -1))  # mention items: the post ids
        return {
            "posts": len(ids) - len(posts),
            "search": len(ids) - len(search),
            "timelines": len(set(ids) - timeline),
            "trending": len(ids) - trending,
            "notifications": len(set(ids) - mentions),
        }


async def dead_letters(stack: FaultStack) -> int:
    """Records in the stack's dead-letter topics (those that exist: a consumer creates its own at start)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.settings.bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
    finally:
        await admin.close()
    tps = [TopicPartition(name, 0) for name in stack.dead_letter_topics(CONSUMERS) if name in existing]
    if not tps:
        return 0
    reader = AIOKafkaConsumer(bootstrap_servers=stack.settings.bootstrap_servers, enable_auto_commit=False)
    await reader.start()
    try:
        return sum((await reader.end_offsets(tps)).values())
    finally:
        await reader.stop()


async def _topics_ready(stack: FaultStack) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.settings.bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
    finally:
        await admin.close()
    wanted = {stack.topic(t) for t in topics.ALL} | set(stack.dead_letter_topics(CONSUMERS))
    return wanted <= existing


@pytest.fixture(scope="module")
async def world(
    stack: FaultStack, stack_pg: asyncpg.Pool, stack_redis: aioredis.Redis, stack_publisher: Publisher
) -> World:
    """Two users, one following the other, the reader's timeline built, and one post through every read model."""
    await eventually(lambda: _topics_ready(stack), timeout=90)
    author, reader = new_id(), new_id()
    handle = f"r-{reader[-10:].lower()}"
    found = World(stack, stack_pg, stack_redis, stack_publisher, author, reader, handle)
    for user_id, user_handle in ((author, f"a-{author[-10:].lower()}"), (reader, handle)):
        await found.publish(UserRegistered(payload=UserRegisteredData(user_id=user_id, handle=user_handle)))
    await found.publish(UserFollowed(payload=FollowData(follower_id=reader, followee_id=author)))

    async def follows() -> int:
        try:
            users = await stack_pg.fetchval("SELECT count(*) FROM users WHERE user_id = ANY($1)", [author, reader])
            active = await stack_pg.fetchval(
                "SELECT count(*) FROM follows WHERE follower_id = $1 AND followee_id = $2 AND active", reader, author
            )
        except asyncpg.UndefinedTableError:  # the consumers have not applied the migrations yet
            return 0
        return int(users) + int(active)

    await eventually(follows, until=lambda n: n == 3, timeout=90)
    timelines = RedisTimelines(stack_redis, stack.settings.timeline_length)
    await rebuild(timelines, PostgresTimelineSource(stack_pg), reader, stack.settings.fanout_max_followers)
    warm_up = await found.publish_posts(1, "warmup")
    await eventually(lambda: found.missing(warm_up), until=lambda m: not any(m.values()), timeout=60)
    return found


async def _fault(
    world: World,
    *,
    tag: str,
    reason: str,
    hit: set[str],
    begin: Callable[[], Awaitable[None]],
    end: Callable[[], Awaitable[None]],
) -> None:
    """Break a store, publish while it is broken, hold it, repair it; then require every post everywhere."""
    stack = world.stack
    since = stack.log_size()
    world.dead_before = await dead_letters(stack)
    gauge_seen: dict[str, float] = {}
    await begin()
    began = time.monotonic()
    try:
        ids = await world.publish_posts(POSTS_PER_FAULT, tag)
        while time.monotonic() - began < HOLD_S:  # the fault lasts HOLD_S; the gauge is read meanwhile
            for consumer in hit:
                value = await stack.outage_gauge(consumer, reason)
                gauge_seen[consumer] = max(gauge_seen.get(consumer, 0.0), value or 0.0)
            await asyncio.sleep(0.25)
        assert stack.alive(), "the consumers process died during the fault"
    finally:
        await end()
    repaired = time.monotonic()
    await eventually(lambda: world.missing(ids), until=lambda m: not any(m.values()), timeout=60)
    converged = elapsed(repaired)
    assert await dead_letters(stack) == 0, "no dead letter, from this fault or any before"
    print(f"\n{reason}: {len(ids)} posts published during {HOLD_S:.0f} s, 0 lost, every read model {converged} s after")

    assert gauge_seen == dict.fromkeys(hit, 1.0), f"chirp_consumer_outage during the fault: {gauge_seen}"
    for consumer in hit:
        assert await stack.outage_gauge(consumer, reason) == 0.0, "the gauge is 0 once the outage is over"
    lines = [e for e in stack.log_lines(since) if e.get("reason") == reason and e.get("consumer") in hit]
    for consumer in hit:
        said = [e["event"].split(":")[0] for e in lines if e["consumer"] == consumer]
        assert said and said[0] == "outage began" and said[-1] == "outage over", (consumer, said)
        assert said.count("outage began") <= 3, f"the log says it once per state change, not per retry: {said}"


async def test_a_full_disk_loses_no_post(world: World) -> None:
    """PostgreSQL's disk is full (53100): the posts and search tables cannot grow for HOLD_S."""

    async def fill() -> None:
        world.stack.fill_disk()

    async def free() -> None:
        world.stack.free_disk()

    await _fault(world, tag="diskfull", reason="postgres_disk_full", hit={"posts", "search"}, begin=fill, end=free)


async def test_redis_at_its_memory_limit_loses_no_post(world: World) -> None:
    """Redis refuses every write (maxmemory reached, noeviction) for HOLD_S."""

    async def limit() -> None:
        await world.redis.config_set("maxmemory", 1)

    async def unlimit() -> None:
        await world.redis.config_set("maxmemory", 0)

    hit = {"timelines", "trending", "notifications"}
    await _fault(world, tag="redisoom", reason="redis_oom", hit=hit, begin=limit, end=unlimit)


async def test_a_read_only_database_loses_no_post(world: World) -> None:
    """PostgreSQL accepts only read-only transactions (25006) for HOLD_S, as a standby or a disk guard would."""

    async def read_only() -> None:
        world.stack.read_only(True)

    async def writable() -> None:
        world.stack.read_only(False)

    # Preparse seals each rendered post with the post's erasure key, which it stores first (these posts were
    # published without one): it is the consumer that waits; posts and search get nothing until it goes on.
    hit = {"preparse"}
    await _fault(world, tag="readonly", reason="postgres_read_only", hit=hit, begin=read_only, end=writable)


def test_the_stack_runs_beside_the_default_one(stack: FaultStack) -> None:
    """`chirp services up` on other ports made a cluster and a Redis directory of their own; a default cluster on
    this machine (the one the rest of the suite uses) still listens on its own port."""
    clusters = {cols[1]: int(cols[2]) for cols in (line.split() for line in stack.cluster_list())}
    assert clusters[postgres.cluster(stack.settings)] == stack.settings.postgres_port
    default = Settings()
    if "chirp" in clusters:
        assert clusters["chirp"] == Settings.model_fields["postgres_port"].default
    assert (stack.home / f"redis-{stack.settings.redis_port}" / "redis.pid").exists()
    assert redis_service.pid(stack.settings) not in (None, redis_service.pid(default))


async def test_a_busy_redis_loses_no_post(world: World) -> None:
    """A script runs past Redis's busy threshold: every other command is answered BUSY until it is killed."""
    threshold = (await world.redis.config_get("busy-reply-threshold"))["busy-reply-threshold"]
    runner = aioredis.Redis.from_url(world.stack.settings.redis_url, socket_timeout=HOLD_S * 4)  # waits for the kill
    script: asyncio.Task[object] | None = None

    async def busy() -> None:
        nonlocal script
        await world.redis.config_set("busy-reply-threshold", 50)
        script = asyncio.create_task(runner.eval("local i = 0 while true do i = i + 1 end", 0))

    async def kill() -> None:
        await world.redis.script_kill()
        assert script is not None
        with pytest.raises(redis.exceptions.ResponseError, match="killed"):  # answered once the script stopped
            await script
        await world.redis.config_set("busy-reply-threshold", threshold)
        await runner.aclose()

    hit = {"timelines", "trending", "notifications"}
    await _fault(world, tag="redisbusy", reason="redis_busy", hit=hit, begin=busy, end=kill)


async def test_a_read_only_redis_loses_no_post(world: World) -> None:
    """Redis turned into a replica (of a master that never answers) refuses writes with READONLY."""

    async def replica() -> None:
        await world.redis.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))

    async def primary() -> None:
        await world.redis.execute_command("REPLICAOF", "NO", "ONE")

    hit = {"timelines", "trending", "notifications"}
    await _fault(world, tag="redisreadonly", reason="redis_read_only", hit=hit, begin=replica, end=primary)
