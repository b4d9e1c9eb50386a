"""Live updates over SSE (`GET /events`): the relay from Redis `chirp:posts` to the streams whose page shows a post.

The gateway runs in-process; a stream is read by driving the ASGI app directly (httpx's ASGI transport buffers whole
responses). Notices are published on the channel as the posts consumer publishes them, or come from a real post
through the whole pipeline.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis
from starlette.applications import Starlette

from chirp import redis_client
from chirp.settings import Settings
from schemas.events import new_id
from store.posts import CHANNEL, DELETED_CHANNEL
from store.relations import Change, RedisRelations
from tests.conftest import eventually
from tests.integration.helpers import login, unique_handle
from tests.integration.test_interactions import post, user

STREAM_TIMEOUT_S = 20.0


@dataclass
class Stream:
    """One open SSE response, parsed into events as chunks arrive."""

    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    events: list[dict[str, str]] = field(default_factory=list)
    buffer: str = ""
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def feed(self, chunk: str) -> None:
        self.buffer += chunk
        while "\n\n" in self.buffer:
            block, self.buffer = self.buffer.split("\n\n", 1)
            event: dict[str, str] = {}
            for line in block.split("\n"):
                name, _, value = line.partition(": ")
                if name and not name.startswith(":"):
                    event[name] = value
            if event:
                self.events.append(event)
        self.arrived.set()

    def posts(self) -> list[dict[str, Any]]:
        return [orjson.loads(e["data"]) for e in self.events if e.get("event") == "post"]

    def named(self, name: str) -> list[dict[str, str]]:
        return [e for e in self.events if e.get("event") == name]

    async def until(self, check: Any, timeout: float = STREAM_TIMEOUT_S) -> None:
        async def probe() -> bool:
            return bool(check(self))

        await eventually(probe, timeout=timeout)


@contextlib.asynccontextmanager
async def stream(app: Starlette, path: str, headers: dict[str, str] | None = None) -> AsyncIterator[Stream]:
    """Open `GET path` on the app and parse what it streams until the block ends (then disconnect)."""
    raw_path, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": raw_path,
        "raw_path": raw_path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
        "app": app,
    }
    result = Stream()
    disconnect = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            result.status = message["status"]
            result.headers = {k.decode(): v.decode() for k, v in message["headers"]}
            result.arrived.set()
        elif message["type"] == "http.response.body":
            result.feed(message.get("body", b"").decode())

    task = asyncio.create_task(app(scope, receive, send))
    try:
        await result.until(lambda s: s.status)
        yield result
    finally:
        disconnect.set()
        await asyncio.wait_for(task, timeout=10)


def notice(post_id: str, author_id: str, reply_to: str | None = None, hashtags: tuple[str, ...] = ()) -> bytes:
    """A live notice as the posts consumer publishes it."""
    return orjson.dumps({"id": post_id, "author_id": author_id, "reply_to": reply_to, "hashtags": hashtags})


@pytest.fixture(scope="module")
async def redis(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    client = redis_client.connect(settings)
    yield client
    await client.aclose()


async def connected(s: Stream) -> None:
    """Wait for the stream's first bytes (the retry advice): the relay is subscribed by then."""
    await s.until(lambda st: any("retry" in e for e in st.events))


async def test_a_stream_relays_notices_for_its_feed_only(app: Starlette, redis: aioredis.Redis) -> None:
    author, other, parent, tag = f"a-{new_id()}", f"a-{new_id()}", new_id(), f"t{new_id().lower()}"
    mine, theirs, reply, tagged = new_id(), new_id(), new_id(), new_id()
    async with (
        stream(app, "/events?feed=all") as every,
        stream(app, f"/events?feed=user:{author}") as by_author,
        stream(app, f"/events?feed=replies:{parent}") as replies,
        stream(app, f"/events?feed=tag:{tag.upper()}") as by_tag,
    ):
        assert every.status == 200
        assert every.headers["content-type"].startswith("text/event-stream")
        for s in (every, by_author, replies, by_tag):
            await connected(s)
        await redis.publish(CHANNEL, notice(mine, author))
        await redis.publish(CHANNEL, notice(theirs, other, hashtags=(tag,)))
        await redis.publish(CHANNEL, notice(reply, other, reply_to=parent))
        await redis.publish(CHANNEL, notice(tagged, author, hashtags=(tag,)))
        ours = {mine, theirs, reply, tagged}
        await every.until(lambda s: ours <= {p["id"] for p in s.posts()})
        await by_author.until(lambda s: {p["id"] for p in s.posts()} >= {mine, tagged})
        await replies.until(lambda s: reply in {p["id"] for p in s.posts()})
        await by_tag.until(lambda s: {p["id"] for p in s.posts()} >= {theirs, tagged})
    assert [p["id"] for p in every.posts() if p["id"] in ours] == [mine, theirs, reply, tagged]
    assert {p["id"] for p in by_author.posts()} == {mine, tagged}
    assert {p["id"] for p in replies.posts()} == {reply}
    assert {p["id"] for p in by_tag.posts()} == {theirs, tagged}
    first = next(e for e in every.named("post") if orjson.loads(e["data"])["id"] == mine)
    assert first["id"].count(".") == 1 and orjson.loads(first["data"])["author_id"] == author


async def test_a_deleted_post_is_announced_to_every_stream(app: Starlette, redis: aioredis.Redis) -> None:
    author, post_id = f"a-{new_id()}", new_id()
    async with (
        stream(app, f"/events?feed=user:{author}") as by_author,
        stream(app, f"/events?feed=tag:t{new_id().lower()}") as other_tag,
    ):
        for s in (by_author, other_tag):
            await connected(s)
        await redis.publish(CHANNEL, notice(post_id, author))
        await redis.publish(DELETED_CHANNEL, orjson.dumps({"id": post_id}))
        for s in (by_author, other_tag):  # any page may show the post (a parent, an older page): all are told
            await s.until(lambda st: any(orjson.loads(e["data"]) == {"id": post_id} for e in st.named("post-deleted")))
    assert [p["id"] for p in by_author.posts()] == [post_id] and other_tag.posts() == []
    deleted = by_author.named("post-deleted")[0]
    assert deleted["id"].count(".") == 1, "numbered like posts, so a reconnect replays it"


async def test_a_reconnect_gets_what_it_missed_after_last_event_id(app: Starlette, redis: aioredis.Redis) -> None:
    author = f"a-{new_id()}"
    before, missed_1, missed_2 = new_id(), new_id(), new_id()
    async with stream(app, f"/events?feed=user:{author}") as first:
        await connected(first)
        await redis.publish(CHANNEL, notice(before, author))
        await first.until(lambda s: s.posts())
    last_id = first.named("post")[-1]["id"]
    # The page is gone: two posts arrive meanwhile (the relay keeps listening a while after its last stream).
    await redis.publish(CHANNEL, notice(missed_1, author))
    await redis.publish(CHANNEL, notice(missed_2, author))
    async with stream(app, f"/events?feed=user:{author}") as probe:  # a second page, to know they were relayed
        await connected(probe)
    relay = app.state.chirp.live_relay

    async def relayed() -> set[str]:
        return {n.post_id for n in relay.buffer}

    await eventually(relayed, until=lambda ids: {missed_1, missed_2} <= ids)
    async with stream(app, f"/events?feed=user:{author}", {"Last-Event-ID": last_id}) as again:
        await again.until(lambda s: len(s.posts()) >= 2)
    assert [p["id"] for p in again.posts()] == [missed_1, missed_2]
    assert not again.named("resync")


async def test_an_unknown_last_event_id_asks_the_page_to_resync(app: Starlette) -> None:
    async with stream(app, "/events?feed=all", {"Last-Event-ID": "otherprocess.42"}) as s:
        await s.until(lambda st: st.named("resync"))


async def test_feeds_are_validated_and_home_needs_a_login(app: Starlette, client: httpx.AsyncClient) -> None:
    assert (await client.get("/events?feed=nope")).status_code == 422
    assert (await client.get("/events?feed=user:")).status_code == 422
    assert (await client.get("/events?feed=home")).status_code == 401


async def test_home_streams_posts_of_followees_and_own(
    app: Starlette, client: httpx.AsyncClient, redis: aioredis.Redis, pipeline: Any
) -> None:
    fan, star, stranger = unique_handle("fan"), unique_handle("star"), f"a-{new_id()}"
    fan_headers = await login(client, fan)
    star_id = await _user_id(client, await login(client, star))

    async def follows() -> int:
        await client.post(f"/api/users/{star}/follow", headers=fan_headers)
        return (await client.get(f"/api/users/{star}", headers=fan_headers)).json().get("followed_by_me", False)

    await eventually(follows, timeout=60)
    fan_id = await _user_id(client, fan_headers)
    followed_post, stranger_post, own_post = new_id(), new_id(), new_id()
    async with stream(app, "/events?feed=home", {"Authorization": fan_headers["Authorization"]}) as home:
        await connected(home)
        await redis.publish(CHANNEL, notice(stranger_post, stranger))
        await redis.publish(CHANNEL, notice(followed_post, star_id))
        await redis.publish(CHANNEL, notice(own_post, fan_id))
        await home.until(lambda s: {followed_post, own_post} <= {p["id"] for p in s.posts()})
    assert stranger_post not in {p["id"] for p in home.posts()}


async def test_a_real_post_reaches_the_open_pages(app: Starlette, client: httpx.AsyncClient, pipeline: Any) -> None:
    headers = await login(client, unique_handle("live"))
    async with stream(app, "/events?feed=all") as every:
        await connected(every)
        created = await client.post("/api/posts", json={"body": "Live #sse"}, headers=headers)
        assert created.status_code == 202, created.text
        post_id = created.json()["id"]
        await every.until(lambda s: post_id in {p["id"] for p in s.posts()}, timeout=60)
    fragment = await client.get(f"/fragments/posts/{post_id}")
    assert fragment.status_code == 200 and f'id="post-{post_id}"' in fragment.text


async def _user_id(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    response = await client.get("/api/me", headers=headers)
    assert response.status_code == 200, response.text
    return str(response.json()["user_id"])


async def test_streams_leave_out_whom_the_viewer_mutes_or_blocks_or_is_blocked_by(
    app: Starlette, client: httpx.AsyncClient, redis: aioredis.Redis
) -> None:
    headers = await login(client, unique_handle("hider"))
    me = await _user_id(client, headers)
    muted, blocked, blocker, other = (f"a-{new_id()}" for _ in range(4))
    now = datetime.now(UTC)
    changes = [Change(me, "mute", muted, True, now), Change(me, "block", blocked, True, now)]
    await RedisRelations(redis).apply([*changes, Change(blocker, "block", me, True, now)])
    posts = {author: new_id() for author in (muted, blocked, blocker, other)}
    auth = {"Authorization": headers["Authorization"]}
    async with (
        stream(app, "/events?feed=all", auth) as every,
        stream(app, f"/events?feed=user:{muted}", auth) as profile,
        stream(app, f"/events?feed=user:{blocked}", auth) as blocked_profile,
        stream(app, "/events?feed=all") as anonymous,
    ):
        for s in (every, profile, blocked_profile, anonymous):
            await connected(s)
        for author, post_id in posts.items():
            await redis.publish(CHANNEL, notice(post_id, author))
        await anonymous.until(lambda s: set(posts.values()) <= {p["id"] for p in s.posts()})
        await every.until(lambda s: posts[other] in {p["id"] for p in s.posts()})
        await profile.until(lambda s: posts[muted] in {p["id"] for p in s.posts()})  # visiting a muted profile
        gone = new_id()  # a deletion reaches every stream: once it is in, every notice before it was handled
        await redis.publish(DELETED_CHANNEL, orjson.dumps({"id": gone}))
        for s in (every, blocked_profile):
            await s.until(lambda st: any(orjson.loads(e["data"]) == {"id": gone} for e in st.named("post-deleted")))
    assert not {posts[muted], posts[blocked], posts[blocker]} & {p["id"] for p in every.posts()}
    assert blocked_profile.posts() == []


def counts_of(s: Stream, post_id: str) -> list[tuple[int, int, int]]:
    found = [orjson.loads(e["data"]) for e in s.named("counts")]
    return [(c["like_count"], c["repost_count"], c["quote_count"]) for c in found if c["id"] == post_id]


async def test_a_post_page_gets_its_counts_live_as_others_like_and_repost(
    app: Starlette, client: httpx.AsyncClient, pipeline: Any
) -> None:
    """A post page's stream (`replies:<id>`) starts with the post's counts, then gets them again after each like,
    repost or quote others make or undo; a page of another post gets none of them."""
    _, author = await user(client, "sa")
    _, fan = await user(client, "sb")
    post_id, other_id = await post(client, author, "count me"), await post(client, author, "not me")
    async with (
        stream(app, f"/events?feed=replies:{post_id}") as page,
        stream(app, f"/events?feed=replies:{other_id}") as other_page,
    ):
        await page.until(lambda s: counts_of(s, post_id))  # as of connecting
        assert counts_of(page, post_id) == [(0, 0, 0)]
        for kind in ("like", "repost"):
            assert (await client.post(f"/api/posts/{post_id}/{kind}", headers=fan)).status_code == 202
        await page.until(lambda s: counts_of(s, post_id)[-1] == (1, 1, 0), timeout=60)
        await post(client, fan, "quoting", quote_of=post_id)
        await page.until(lambda s: counts_of(s, post_id)[-1] == (1, 1, 1))
        assert (await client.delete(f"/api/posts/{post_id}/like", headers=fan)).status_code == 202
        await page.until(lambda s: counts_of(s, post_id)[-1] == (0, 1, 1))
    live = [e for e in page.named("counts") if "id" in e]
    assert live and all(e["id"].count(".") == 1 for e in live), "numbered, so a reconnect replays them"
    assert counts_of(other_page, post_id) == [] and counts_of(other_page, other_id) == [(0, 0, 0)]
