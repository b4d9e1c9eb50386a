"""`chirp erasure migrate` (docs/erasure.md): a log written before sealing and opaque ids (events in clear, user ids
`gh-<github id>` and `dev-<login>`) is rewritten into sealed form under opaque ids; the person still logs in to the
same account and sees their posts, and a later account deletion erases them as it erases a new account.

The migration rewrites every topic of a deployment, so it runs on a stack of its own: topics and consumer groups
under a scratch namespace on the shared broker, a scratch database, and a Redis of its own (a rebuild swaps every
key of a model's prefixes, which must not touch the shared test database).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from chirp import kafka_admin
from chirp.settings import Settings
from ops.migrate import delete_topic, map_ids, stage
from schemas import topics
from schemas.events import (
    Event,
    FollowData,
    InteractionData,
    PostCreated,
    PostCreatedData,
    PostLike,
    UserFollowed,
    UserRegistered,
    UserRegisteredData,
    new_id,
)
from store.keys import PgKeyStore
from store.postgres import connect
from tests.conftest import eventually
from tests.integration.erasure_support import raw_log
from tests.integration.faults import free_port, private_redis
from tests.integration.helpers import stop, unique_handle
from tests.scratch import scratch_id


@dataclass
class Stack:
    settings: Settings  # the test's, for the broker and the PostgreSQL server
    namespace: str
    database: str
    env: dict[str, str]
    url: str

    def topic(self, topic: topics.Topic) -> str:
        return self.namespace + topic.name.removeprefix(topics.NAMESPACE)

    def run(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ops", *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "ops", *args], env=self.env)


@pytest.fixture
def stack(settings: Settings) -> Iterator[Stack]:
    namespace, database, port = f"{scratch_id()}-", scratch_id(), free_port()
    with private_redis() as (redis_port, _):
        env = {
            **os.environ,
            "CHIRP_TOPIC_NAMESPACE": namespace,
            "CHIRP_CONSUMER_GROUP_PREFIX": namespace,
            "CHIRP_POSTGRES_DB": database,
            "CHIRP_REDIS_PORT": str(redis_port),
            "CHIRP_REDIS_DB": "0",
            "CHIRP_ENV": "dev",
            "CHIRP_PORT": str(port),
            "CHIRP_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "CHIRP_ERASURE_DELAY_S": "2",
            "CHIRP_ERASURE_POLL_S": "0.2",
            "CHIRP_METRICS_PORT": "0",
        }
        asyncio.run(_database(settings, f'CREATE DATABASE "{database}" OWNER "{settings.postgres_user}"'))
        try:
            yield Stack(settings, namespace, database, env, f"http://127.0.0.1:{port}")
        finally:
            asyncio.run(_database(settings, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


async def _database(settings: Settings, sql: str) -> None:
    conn = await asyncpg.connect(settings.postgres_dsn("postgres"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
async def db(stack: Stack) -> AsyncIterator[asyncpg.Pool]:
    pool = await connect(stack.settings.model_copy(update={"postgres_db": stack.database}), max_size=2)  # migrated
    yield pool
    await pool.close()


async def publish_legacy(stack: Stack, events: list[Event]) -> None:
    """Events as Chirp published them before sealing: plain JSON, keyed, no erasure headers."""
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.settings.bootstrap_servers)
    await admin.start()
    try:
        new = [NewTopic(stack.topic(t), t.partitions, 1, topic_configs={"retention.ms": "-1"}) for t in topics.ALL]
        await admin.create_topics(new)
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=stack.settings.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for event in events:
            value = event.model_dump_json().encode()
            await producer.send_and_wait(stack.topic(event.topic), value, key=event.key.encode())
    finally:
        await producer.stop()


async def login(http: httpx.AsyncClient, handle: str) -> dict[str, str]:
    response = await http.post("/auth/dev-login", json={"login": handle})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def test_migrate_seals_the_legacy_log_under_opaque_ids_and_the_account_stays_erasable(
    stack: Stack, db: asyncpg.Pool
) -> None:
    handle, fan = unique_handle("legacy"), unique_handle("fan")
    github_id = int(new_id()[-9:], 36) % 10**12 + 10**11
    old_id, fan_id = f"gh-{github_id}", f"dev-{fan}"
    bodies = [f"written in clear {new_id()}" for _ in range(2)]
    posts = [PostCreated(payload=PostCreatedData(post_id=new_id(), author_id=old_id, body=b)) for b in bodies]
    await publish_legacy(
        stack,
        [
            UserRegistered(
                actor=old_id,
                payload=UserRegisteredData(
                    user_id=old_id, github_id=github_id, handle=handle, display_name=f"Name {handle}"
                ),
            ),
            UserRegistered(actor=fan_id, payload=UserRegisteredData(user_id=fan_id, handle=fan)),
            *posts,
            UserFollowed(actor=fan_id, payload=FollowData(follower_id=fan_id, followee_id=old_id)),
            PostLike(actor=fan_id, payload=InteractionData(user_id=fan_id, post_id=posts[0].payload.post_id)),
        ],
    )
    # The consumers of that time project them (preparse seals its renderings under the legacy id's keys).
    consumers = stack.start("consume", "--all")
    try:
        liked = "SELECT like_count FROM post_counters WHERE post_id = $1"
        await eventually(lambda: db.fetchval(liked, posts[0].payload.post_id), until=lambda n: n == 1, timeout=60)
        followers = "SELECT followers_count FROM users WHERE user_id = $1"
        await eventually(lambda: db.fetchval(followers, old_id), until=lambda n: n == 1)
        parsed = "SELECT count(*) FROM posts WHERE author_id = $1 AND html <> ''"
        await eventually(lambda: db.fetchval(parsed, old_id), until=lambda n: n == 2)
    finally:
        stop(consumers)
    secrets = [old_id, str(github_id), fan_id, handle, *bodies]
    before = await raw_log(stack.settings.bootstrap_servers, stack.namespace)
    assert all(s.encode() in before for s in secrets), "the legacy log holds them in clear"

    migrated = stack.run("erasure", "migrate", "--jobs", "1")
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    after = await raw_log(stack.settings.bootstrap_servers, stack.namespace)
    for secret in secrets:
        assert secret.encode() not in after, f"{secret!r} is still in the log"
    assert not [t for t in await topic_names(stack) if t.endswith(".migrating")], "no staging copy is left"
    new_id_of = "SELECT user_id FROM login_accounts WHERE login_kind = 'github' AND login_id = $1"
    new_user = await db.fetchval(new_id_of, str(github_id))
    assert new_user and not new_user.startswith(("gh-", "dev-"))
    legacy_rows = """SELECT (SELECT count(*) FROM erasure_keys WHERE key_id LIKE '%' || $1 OR owner_id = $1)
                          + (SELECT count(*) FROM users WHERE user_id = $1)
                          + (SELECT count(*) FROM legacy_user_ids)"""
    assert await db.fetchval(legacy_rows, old_id) == 0, "no legacy id is left in PostgreSQL"
    again = stack.run("erasure", "migrate", "--jobs", "1")
    assert again.returncode == 0 and "nothing to migrate" in again.stdout, again.stdout + again.stderr

    consumers, gateway = stack.start("consume", "--all"), stack.start("gateway")
    try:
        async with httpx.AsyncClient(base_url=stack.url, timeout=30) as http:
            await eventually(lambda: healthy(http), timeout=60)
            me = await login(http, handle)
            profile = (await http.get("/api/me", headers=me)).json()
            assert profile["user_id"] == new_user, "the same account, under its opaque id"
            mine = (await http.get(f"/api/users/{handle}/posts", headers=me)).json()
            assert sorted(p["body"] for p in mine["items"]) == sorted(bodies)
            assert (await http.get(f"/api/users/{handle}")).json()["followers_count"] == 1
            readable = stack.run("erasure", "verify", new_user)
            assert readable.returncode == 1, "before the deletion the account is readable"

            deleted = await http.request("DELETE", "/api/me", json={"confirm": handle}, headers=me)
            assert deleted.status_code == 202, deleted.text
            done = "SELECT done_at IS NOT NULL FROM erasures WHERE target = $1"
            await eventually(lambda: db.fetchval(done, f"u:{new_user}"), timeout=60)
        verdict = stack.run("erasure", "verify", new_user)
        assert verdict.returncode == 0, verdict.stdout + verdict.stderr
        for post in posts:
            assert stack.run("erasure", "verify", post.payload.post_id).returncode == 0
    finally:
        stop(gateway)
        stop(consumers)


async def test_a_migration_interrupted_while_swapping_resumes_from_its_complete_copy(
    stack: Stack, db: asyncpg.Pool
) -> None:
    handle = unique_handle("halfway")
    old_id = f"dev-{handle}"
    bodies = [f"clear before the swap {new_id()}" for _ in range(3)]
    posts = [PostCreated(payload=PostCreatedData(post_id=new_id(), author_id=old_id, body=b)) for b in bodies]
    registered = UserRegistered(actor=old_id, payload=UserRegisteredData(user_id=old_id, handle=handle))
    await publish_legacy(stack, [registered, *posts])
    # A run stopped in the middle of swapping post-created: its copy is complete, the topic itself is gone.
    settings = stack.settings.model_copy(update={"postgres_db": stack.database})
    topic = stack.topic(topics.POST_CREATED)
    ids = await map_ids(db, {old_id})
    staged = await stage(settings, db, PgKeyStore(db), topic, ids)
    assert (staged.records, staged.rewritten) == (3, 3)
    await db.execute("UPDATE log_migration SET phase = 'swapping' WHERE topic = $1", topic)
    async with kafka_admin.admin(settings) as client:
        await delete_topic(client, topic)

    migrated = stack.run("erasure", "migrate", "--jobs", "1")
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    log = await raw_log(stack.settings.bootstrap_servers, stack.namespace)
    for secret in (old_id, handle, *bodies):
        assert secret.encode() not in log, f"{secret!r} is still in the log"
    refilled = await records_of(stack, topic)
    assert sorted(r.key for r in refilled) == sorted(p.payload.post_id.encode() for p in posts), "nothing lost"
    assert all(("sealed", b"1") in r.headers for r in refilled)
    login = "SELECT user_id FROM login_accounts WHERE login_kind = 'dev' AND login_id = $1"
    assert await db.fetchval(login, handle.lower()) == ids[old_id]
    assert await db.fetchval("SELECT count(*) FROM log_migration") == 0


async def test_a_topic_written_to_after_it_was_staged_is_not_swapped_but_staged_again(
    stack: Stack, db: asyncpg.Pool
) -> None:
    handle = unique_handle("late")
    old_id = f"dev-{handle}"
    first, late = (PostCreated(payload=PostCreatedData(post_id=new_id(), author_id=old_id, body=b)) for b in "ab")
    await publish_legacy(stack, [first])
    settings = stack.settings.model_copy(update={"postgres_db": stack.database})
    topic = stack.topic(topics.POST_CREATED)
    await stage(settings, db, PgKeyStore(db), topic, await map_ids(db, {old_id}))
    await publish_legacy(stack, [late])  # a gateway still running: its post must not be lost by the swap

    refused = stack.run("erasure", "migrate", "--jobs", "1")
    assert refused.returncode == 1 and "written to after it was staged" in " ".join(refused.stdout.split())
    assert len(await records_of(stack, topic)) == 2, "the topic was left as it was"
    migrated = stack.run("erasure", "migrate", "--jobs", "1")
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    refilled = await records_of(stack, topic)
    assert sorted(r.key for r in refilled) == sorted(p.payload.post_id.encode() for p in (first, late))
    assert old_id.encode() not in await raw_log(stack.settings.bootstrap_servers, stack.namespace)


async def records_of(stack: Stack, topic: str) -> list[ConsumerRecord]:
    async with kafka_admin.reader(stack.settings) as reader:
        tps = await kafka_admin.partitions(reader, [topic])
        ends = await reader.end_offsets(tps)
        reader.assign(tps)
        await reader.seek_to_beginning(*tps)
        found: list[ConsumerRecord] = []
        while len(found) < sum(ends.values()):
            for records in (await reader.getmany(timeout_ms=500)).values():
                found += records
        return found


async def healthy(http: httpx.AsyncClient) -> bool:
    try:
        return (await http.get("/healthz")).status_code == 200
    except httpx.TransportError:
        return False


async def topic_names(stack: Stack) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.settings.bootstrap_servers)
    await admin.start()
    try:
        return [t for t in await admin.list_topics() if t.startswith(stack.namespace)]
    finally:
        await admin.close()
