"""`chirp replay` on the real services: a rebuild during live publishing converges to a fresh rebuild."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from itertools import pairwise

import asyncpg
import pytest
import redis.asyncio as aioredis

from chirp.settings import Settings
from consumers.runtime import Consumer, Context
from ops import _kafka, _shadow_pg, _shadow_redis, replay
from ops.replay import Progress, ReadModel, Replay, ReplayError, rebuild_order, replay_in_child
from producers.broker import Publisher
from schemas.events import PostCreated, new_id
from schemas.topics import Topic
from tests.conftest import eventually
from tests.integration import replay_probe as probe


async def count(pg: asyncpg.Pool, table: str) -> int:
    try:
        return await pg.fetchval(f"SELECT count(*) FROM {table}")
    except asyncpg.UndefinedTableError:
        return 0


async def snapshot(pg: asyncpg.Pool, redis_client: aioredis.Redis, table: str, prefix: str) -> tuple[list, dict]:
    rows = [tuple(r) for r in await pg.fetch(f"SELECT * FROM {table} ORDER BY post_id")]
    keys = sorted([k async for k in redis_client.scan_iter(match=f"{prefix}*")])
    return rows, {k: sorted(await redis_client.smembers(k)) for k in keys}


async def indexes(pg: asyncpg.Pool, table: str) -> list[tuple[str, str]]:
    rows = await pg.fetch("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = $1 ORDER BY 1", table)
    return [(r["indexname"], r["indexdef"]) for r in rows]


async def test_replay_during_live_publishing_converges_to_a_fresh_rebuild(
    settings: Settings, publisher: Publisher, pg: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    group, table, topic = await probe.fresh(settings, "rp", partitions=3)
    consumer, model = probe.make(group, topic, table)
    prefix = model.redis_prefixes[0]
    before, during = probe.posts(1500), probe.posts(1500)
    await probe.send(publisher, topic, before)

    with probe.running(group, topic, table):
        await eventually(lambda: count(pg, table), until=lambda n: n == 1500, timeout=90)
        built = await indexes(pg, table)
        # A damaged read model (rows and keys lost): the replay must bring them back.
        await pg.execute(f"DELETE FROM {table} WHERE post_id IN (SELECT post_id FROM {table} LIMIT 100)")
        await redis_client.delete(f"{prefix}author:a1")
        seen: list[int] = []
        done = asyncio.Event()

        async def read_while_replaying() -> None:
            while not done.is_set():
                seen.append(await count(pg, table))
                await asyncio.sleep(0.01)

        reports: list[Progress] = []
        reader = asyncio.create_task(read_while_replaying())
        publishing = asyncio.create_task(probe.send_slowly(publisher, topic, during, 50))
        job = Replay(settings, consumer, model, on_progress=lambda p: reports.append(Progress(**p.__dict__)))
        [result] = await job.run()
        await publishing
        done.set()
        await reader
        await eventually(lambda: count(pg, table), until=lambda n: n == 3000, timeout=90)
        live = await snapshot(pg, redis_client, table, prefix)

    assert result.planned >= 1500 and result.processed >= result.planned
    assert result.dead_lettered == 0 and not result.offsets_handed_off, "the running live group keeps its offsets"
    assert {r.phase for r in reports} >= {"build", "index", "swap", "drain", "done"}
    assert [name for name, _ in built] == [f"{table}_by_author", f"{table}_pkey", f"{table}_words"]
    assert await indexes(pg, table) == built, "the swapped-in table has every index, late ones too"
    assert all(b >= a for a, b in pairwise(seen)), "readers never saw rows disappear"
    assert seen[0] >= 1400 and max(seen) <= 3000
    assert [r[0] for r in live[0]] == sorted(e.payload.post_id for e in before + during)
    assert sum(len(v) for v in live[1].values()) == 3000

    # A fresh rebuild with the live consumer stopped gives the same model, row by row, key by key.
    [fresh] = await Replay(settings, consumer, model).run()
    assert fresh.processed == fresh.planned == 3000
    assert fresh.offsets_handed_off, "a stopped live group resumes where the rebuilt model is"
    assert await snapshot(pg, redis_client, table, prefix) == live
    async with _kafka.admin(settings) as admin:
        handed = await _kafka.committed(admin, settings.group(group))
        groups = await _kafka.groups(admin)
    assert sum(handed.values()) == 3000
    assert not [g for g in groups if g.startswith(f"{settings.group(group)}.replay-")], "replay groups are deleted"
    leftovers = await pg.fetch("SELECT nspname FROM pg_namespace WHERE nspname LIKE $1", f"{table}%")
    assert leftovers == []
    assert [k async for k in redis_client.scan_iter(match="~replay:" + table + "*")] == []
    await pg.execute(f"DROP TABLE {table}")


async def test_a_replay_in_many_batches_handles_every_event_once(
    settings: Settings, publisher: Publisher, pg: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    """Each next batch is fetched and decoded while the one before is handled: none may be lost or handled twice,
    and an undecodable record among them is dead-lettered in its place."""
    group, table, topic = await probe.fresh(settings, "rp", partitions=3)
    consumer, model = probe.make(group, topic, table)

    @consumer.on_before_swap
    async def count_authors(ctx: Context, client: aioredis.Redis, root: str) -> None:
        """What readers get that no handler writes, completed from the shadow just before the swap."""
        authors = [key async for key in client.scan_iter(match=f"{root}rp:{group}:author:*", count=1000)]
        await client.set(f"{root}rp:{group}:authors", len(authors))

    first, second = probe.posts(200), probe.posts(100)
    await probe.send(publisher, topic, first)
    await publisher.publish_raw(topic.name, b"bad", b"{not json", {})
    await probe.send(publisher, topic, second)
    small = settings.model_copy(update={"replay_batch_size": 7})
    [result] = await Replay(small, consumer, model, catch_up_lag=0).run()
    assert result.planned == 301
    assert result.processed == 301, "every record handed to the handlers exactly once"
    assert result.dead_lettered == 1
    assert int(await redis_client.get(f"rp:{group}:authors") or 0) == 7, "the consumer's before_swap hook ran"
    rows = await pg.fetch(f"SELECT post_id FROM {table} ORDER BY post_id")
    assert [r["post_id"] for r in rows] == sorted(e.payload.post_id for e in first + second)
    async with _kafka.admin(settings) as admin:
        handed = await _kafka.committed(admin, settings.group(group))
    assert sum(handed.values()) == 301, "the live group starts after the last record"
    await pg.execute(f"DROP TABLE {table}")


async def test_a_replay_removes_what_an_interrupted_one_left(
    settings: Settings, publisher: Publisher, pg: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    group, table, topic = await probe.fresh(settings, "rp", partitions=1)
    consumer, model = probe.make(group, topic, table)
    await probe.send(publisher, topic, probe.posts(20))
    await Replay(settings, consumer, model).run()
    # What a replay killed mid-build leaves: its shadow schema, keys under its root, the root listed.
    base = replay._safe(consumer.name)
    root = f"~replay:{base}:999:"
    await pg.execute(f"CREATE SCHEMA {base}_shadow_999")
    await redis_client.sadd(_shadow_redis.ROOTS, root, "~replay:another:1:")
    await redis_client.set(f"{root}{model.redis_prefixes[0]}author:a1", "left")

    [result] = await Replay(settings, consumer, model).run()

    assert result.processed == 20
    assert not await pg.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname LIKE $1", f"{base}\\_%")
    assert [k async for k in redis_client.scan_iter(match=f"~replay:{base}:*")] == []
    assert await redis_client.smembers(_shadow_redis.ROOTS) >= {"~replay:another:1:"}, "others' roots stay"
    assert not {r for r in await redis_client.smembers(_shadow_redis.ROOTS) if r.startswith(f"~replay:{base}:")}
    await redis_client.srem(_shadow_redis.ROOTS, "~replay:another:1:")
    await pg.execute(f"DROP TABLE {table}")


async def test_a_shadow_clone_builds_reader_and_full_text_indexes_after_the_rows(pg: asyncpg.Pool) -> None:
    table, schema = f"rc_{new_id().lower()}", f"rc_shadow_{new_id().lower()}"
    await pg.execute(f"CREATE TABLE {table} (id text PRIMARY KEY, author text, body text)")
    await pg.execute(f"CREATE INDEX {table}_author ON {table} (author)")  # only readers use it
    await pg.execute(f"CREATE INDEX {table}_body ON {table} (body)")  # a handler's own lookups use it
    await pg.execute(f"CREATE INDEX {table}_words ON {table} USING gin (to_tsvector('simple', body))")

    async def names(conn: asyncpg.Connection) -> set[str]:
        rows = await conn.fetch("SELECT indexname FROM pg_indexes WHERE schemaname = $1", schema)
        return {r["indexname"] for r in rows}

    async with pg.acquire() as conn:
        await conn.execute(f"CREATE SCHEMA {schema}")
        try:
            late = await _shadow_pg.clone_table(conn, table, "public", schema, frozenset({f"{table}_author"}))
            assert await names(conn) == {f"{table}_pkey", f"{table}_body"}, "what the handlers need, at once"
            await _shadow_pg.create_late_indexes(pg, late)
            assert await names(conn) == {f"{table}_pkey", f"{table}_body", f"{table}_author", f"{table}_words"}
        finally:
            await conn.execute(f"DROP SCHEMA {schema} CASCADE")
            await conn.execute(f"DROP TABLE {table}")


async def test_replay_from_time_keeps_older_rows_and_reprocesses_newer_ones(
    settings: Settings, publisher: Publisher, pg: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    group, table, topic = await probe.fresh(settings, "rp", partitions=2)
    consumer, model = probe.make(group, topic, table)
    old, new = probe.posts(30), probe.posts(20)
    await probe.send(publisher, topic, old)
    with probe.running(group, topic, table):
        await eventually(lambda: count(pg, table), until=lambda n: n == 30, timeout=60)
    cut = datetime.now(UTC)
    await probe.send(publisher, topic, new)
    job = Replay(settings, consumer, model, from_time=cut)
    [plan] = await job.plan()
    assert plan.planned == 20
    [result] = await job.run()
    assert result.processed == 20
    assert await count(pg, table) == 50, "rows from before T were copied from the live model, later ones replayed"
    analyzed = await pg.fetchval("SELECT reltuples FROM pg_class WHERE oid = $1::regclass", table)
    assert analyzed >= 30, "the swapped-in table has planner statistics (reltuples is -1 when never analyzed)"
    await pg.execute(f"DROP TABLE {table}")


async def test_a_replay_that_dead_letters_too_much_stops_before_its_swap(
    settings: Settings, publisher: Publisher, pg: asyncpg.Pool, redis_client: aioredis.Redis, monkeypatch
) -> None:
    group, table, topic = await probe.fresh(settings, "rp", partitions=1)
    consumer, model = probe.make(group, topic, table)
    await probe.send(publisher, topic, probe.posts(12))
    with probe.running(group, topic, table):
        await eventually(lambda: count(pg, table), until=lambda n: n == 12, timeout=60)
    monkeypatch.setattr(replay, "DEAD_LETTERS_ALLOWED", 5)
    hasty = settings.model_copy(update={"consumer_max_attempts": 1, "consumer_retry_base_ms": 1})
    await redis_client.set(probe.fail_flag(group), "1")  # every event fails: a rebuild would be empty
    try:
        with pytest.raises(
            ReplayError, match=r"\d+ of \d+ events dead-lettered \(last: handler_error: .*probe failing"
        ):
            await Replay(hasty, consumer, model).run()
    finally:
        await redis_client.delete(probe.fail_flag(group))
    assert await count(pg, table) == 12, "the live model is untouched"
    shadows = await pg.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname LIKE $1", f"{replay._safe(group)}_%")
    assert shadows == 0, "the shadow copy is dropped"
    await pg.execute(f"DROP TABLE {table}")


async def test_replay_refuses_consumers_without_a_read_model(settings: Settings) -> None:
    bare = Consumer(f"bare-{new_id().lower()}")
    with pytest.raises(ReplayError, match="no read model"):
        await Replay(settings, bare, ReadModel()).run()


async def test_on_arangodb_the_posts_replay_rebuilds_collections_not_tables(settings: Settings) -> None:
    posts = replay.resolve("posts")
    on_arango = settings.model_copy(update={"store": "arango", "arango_url": "http://127.0.0.1:1"})
    [planned] = await Replay(on_arango, posts).plan()
    assert (planned.tables, planned.collections) == ((), ("posts", "post_versions"))
    [on_pg] = await Replay(settings, posts).plan()
    assert (on_pg.tables, on_pg.collections) == (("posts", "post_versions"), ())


async def _noop(events: list[PostCreated], ctx: object) -> None:
    return None


def test_rebuild_order_puts_upstream_models_first() -> None:
    topic = Topic("t", key="post_id")

    def consumer(name: str, **declared: tuple[str, ...]) -> Consumer:
        made = Consumer(name)
        for attr, value in declared.items():
            setattr(made, attr, value)
        made.on(topic, batch=True, model=PostCreated)(_noop)
        return made

    found = rebuild_order(
        [
            consumer("zeta", tables=("z",), after=("mentions",)),
            consumer("mentions", redis_prefixes=("m:",)),
            consumer("users", tables=("users",)),
            consumer("preparse"),
        ]
    )
    assert [c.name for c in found] == ["users", "mentions", "zeta"]


async def test_a_replay_in_a_child_process_reports_its_progress_and_result(
    settings: Settings, publisher: Publisher, pg: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    group, table, topic = await probe.fresh(settings, "rp", partitions=3)
    await probe.send(publisher, topic, probe.posts(700))
    for name, value in (("CHIRP_RP_GROUP", group), ("CHIRP_RP_TOPIC", topic.name), ("CHIRP_RP_TABLE", table)):
        monkeypatch.setenv(name, value)  # the child (`chirp replay ... --progress-json`) builds the probe from these
    reports: list[Progress] = []

    [result] = await replay_in_child(["tests.integration.replay_probe"], reports.append)

    assert (result.consumer, result.planned, result.processed) == (group, 700, 700)
    assert result.offsets_handed_off and result.tables == (table,)
    assert {r.phase for r in reports} >= {"build", "done"} and reports[-1].processed == 700
    assert await count(pg, table) == 700
    await pg.execute(f"DROP TABLE {table}")


async def test_consumers_replayed_together_read_each_event_once_and_each_build_their_own_model(
    settings: Settings,
    publisher: Publisher,
    pg: asyncpg.Pool,
    redis_client: aioredis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two consumers of one topic in one replay, one of them live meanwhile, while posts keep arriving: each
    record is fetched and decoded once, and each model ends as its own fresh rebuild would."""
    live, table_live, topic = await probe.fresh(settings, "rp", partitions=3)
    stopped, table_stopped, _ = await probe.fresh(settings, "rp", partitions=1)
    first, model_first = probe.make(live, topic, table_live)
    second, model_second = probe.make(stopped, topic, table_stopped)
    before, during = probe.posts(600), probe.posts(300)
    await probe.send(publisher, topic, before)
    await publisher.publish_raw(topic.name, b"bad", b"{not json", {})
    decoded = 0
    real_decode = replay.decode

    def counting_decode(record: object, model: type, keys: object = None) -> object:
        nonlocal decoded
        decoded += 1
        return real_decode(record, model, keys)  # type: ignore[arg-type]

    monkeypatch.setattr(replay, "decode", counting_decode)
    small = settings.model_copy(update={"replay_batch_size": 50})

    with probe.running(live, topic, table_live):
        await eventually(lambda: count(pg, table_live), until=lambda n: n == 600, timeout=90)

        publishing = asyncio.create_task(probe.send_slowly(publisher, topic, during, 30))
        job = Replay(small, [first, second], [model_first, model_second])
        results = await job.run()
        await publishing
        await eventually(lambda: count(pg, table_live), until=lambda n: n == 900, timeout=90)

    assert [r.consumer for r in results] == [live, stopped]
    assert results[0].group == results[1].group == job.group and "+" in job.group
    for result in results:
        assert result.planned >= 601 and result.processed >= result.planned
        assert result.dead_lettered == 1, "each consumer dead-letters the undecodable record it was given"
    assert decoded == results[0].processed, "each record decoded once for both consumers"
    assert [r.offsets_handed_off for r in results] == [False, True], "the running live group keeps its offsets"
    ids = sorted(e.payload.post_id for e in before + during)
    assert [r["post_id"] for r in await pg.fetch(f"SELECT post_id FROM {table_live} ORDER BY 1")] == ids
    stopped_rows = [r["post_id"] for r in await pg.fetch(f"SELECT post_id FROM {table_stopped} ORDER BY 1")]
    assert len(stopped_rows) == results[1].processed - 1, "the stopped model holds what the replay handled"
    assert set(stopped_rows) <= set(ids)
    for group, table in ((live, table_live), (stopped, table_stopped)):
        keys = [k async for k in redis_client.scan_iter(match=f"rp:{group}:*")]
        assert sum([await redis_client.scard(k) for k in keys]) == await count(pg, table)
        names = [name for name, _ in await indexes(pg, table)]
        assert names == [f"{table}_by_author", f"{table}_pkey", f"{table}_words"], "late indexes built too"
    async with _kafka.admin(settings) as admin:
        handed = await _kafka.committed(admin, settings.group(stopped))
        groups = await _kafka.groups(admin)
    assert sum(handed.values()) == results[1].processed, "the stopped group resumes after what its model holds"
    assert job.group not in groups, "the replay group is deleted"
    for name in (live, stopped):
        shadows = await pg.fetchval(
            "SELECT count(*) FROM pg_namespace WHERE starts_with(nspname, $1)", replay._safe(name)
        )
        assert shadows == 0, "shadow and old schemas are dropped"
    for table in (table_live, table_stopped):
        await pg.execute(f"DROP TABLE {table}")


async def test_consumers_that_read_each_others_models_are_not_replayed_together(settings: Settings) -> None:
    upstream = Consumer(f"up-{new_id().lower()}", tables=("up",))
    downstream = Consumer(f"down-{new_id().lower()}", tables=("down",), after=(upstream.name,))
    with pytest.raises(ReplayError, match=f"{downstream.name} reads the model of {upstream.name}"):
        Replay(settings, [upstream, downstream])


async def test_a_member_owning_only_keys_is_swapped_while_the_tables_get_their_indexes(
    settings: Settings, publisher: Publisher, pg: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    """A keys-only model moves in while PostgreSQL builds the other member's late indexes; posts published during
    the replay reach both models."""
    group, table, topic = await probe.fresh(settings, "rp", partitions=2)
    with_table, _ = probe.make(group, topic, table)
    prefix = f"rk:{new_id().lower()}:"
    keys_only = Consumer(f"rk-{new_id().lower()}", "keys-only probe", redis_prefixes=(prefix,))

    @keys_only.on(topic, batch=True, model=PostCreated)
    async def by_author(events: list[PostCreated], ctx: Context) -> None:
        async with ctx.redis.pipeline(transaction=False) as pipe:
            for e in events:
                pipe.sadd(f"{prefix}{e.payload.author_id}", e.payload.post_id)
            await pipe.execute()

    await redis_client.sadd(f"{prefix}gone", "x")  # a live key the rebuilt model lacks
    before, during = probe.posts(500), probe.posts(200)
    await probe.send(publisher, topic, before)
    await Replay(settings, with_table).run()  # the live table: its copy gets the late indexes

    phases: list[str] = []
    publishing = asyncio.create_task(probe.send_slowly(publisher, topic, during, 20))
    results = await Replay(settings, [with_table, keys_only], on_progress=lambda p: phases.append(p.phase)).run()
    await publishing

    handled = results[1].processed
    assert handled == results[0].processed >= 500
    assert phases.index("swap") < phases.index("index") < phases.index("drain"), "keys first, then the indexes"
    assert results[1].redis_keys == 7, "one set per author moved in"
    keys = [k async for k in redis_client.scan_iter(match=f"{prefix}*")]
    assert f"{prefix}gone" not in keys
    members = {m for k in keys for m in await redis_client.smembers(k)}
    assert len(members) == handled and members <= {e.payload.post_id for e in before + during}
    assert await count(pg, table) == handled
    assert [k async for k in redis_client.scan_iter(match="~replay:rk_*")] == []
    await pg.execute(f"DROP TABLE {table}")
