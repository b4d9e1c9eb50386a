"""The posts consumer on the real broker: replays, deletes before posts, live-update notices."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import orjson
import pytest
import redis.asyncio as aioredis
from starlette.applications import Starlette

from chirp.settings import Settings
from schemas import topics
from schemas.events import PostDeleted, PostDeletedData, PostParsed, PostParsedData, new_id
from store.posts import CHANNEL, DELETED_CHANNEL, PostgresPosts
from tests.conftest import eventually
from tests.integration.posts_support import caught_up

pytestmark = pytest.mark.usefixtures("pipeline")


@pytest.fixture
def posts(app: Starlette) -> PostgresPosts:
    return PostgresPosts(app.state.chirp.pg)


@pytest.fixture
async def notices(settings: Settings) -> AsyncIterator[list[dict]]:
    """Every announcement on `chirp:posts` and `chirp:posts:deleted` while the test runs (with its channel)."""
    client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    pubsub = client.pubsub()
    await pubsub.subscribe(CHANNEL, DELETED_CHANNEL)
    seen: list[dict] = []

    async def listen() -> None:
        async for message in pubsub.listen():
            if message["type"] == "message":
                seen.append({"channel": message["channel"], **orjson.loads(message["data"])})

    task = asyncio.create_task(listen())
    yield seen
    task.cancel()
    await pubsub.aclose()
    await client.aclose()


def post_parsed(post_id: str, author: str, tag: str) -> PostParsed:
    return PostParsed(
        payload=PostParsedData(
            post_id=post_id, author_id=author, body=f"#{tag}", html=f"<p>#{tag}</p>", text=f"#{tag}",
            hashtags=(tag,), created_at=datetime.now(UTC),
        )
    )  # fmt: skip


async def test_the_same_post_parsed_twice_is_one_post_and_one_notice(publisher, posts, notices, settings) -> None:
    event = post_parsed(new_id(), new_id(), "replay")
    await publisher.publish(event)
    await eventually(lambda: posts.exists(event.payload.post_id))
    await publisher.publish(event)
    await caught_up(settings, settings.group("posts"), topics.POST_PARSED)
    page = await posts.by_author(event.payload.author_id, None, 10)
    assert [p.id for p in page.items] == [event.payload.post_id]
    mine = await eventually(lambda: _notices_for(notices, event.payload.post_id))
    data = event.payload
    assert mine == [{"channel": CHANNEL, "id": data.post_id, "author_id": data.author_id, "reply_to": None,
                     "hashtags": ["replay"]}]  # fmt: skip


async def test_a_delete_before_the_post_keeps_it_away(publisher, posts, notices, settings) -> None:
    post_id, author = new_id(), new_id()
    await publisher.publish(PostDeleted(payload=PostDeletedData(post_id=post_id, author_id=author)))
    await caught_up(settings, settings.group("posts"), topics.POST_DELETED)  # the tombstone is written
    await publisher.publish(post_parsed(post_id, author, "late"))
    await publisher.publish(post_parsed(post_id, author, "later"))  # a re-render cannot revive it either
    await caught_up(settings, settings.group("posts"), topics.POST_PARSED)
    assert await posts.get(post_id) is None
    assert (await posts.by_author(author, None, 10)).items == []
    assert post_id not in {p.id for p in (await posts.by_tag("late", None, 100)).items}
    assert [n for n in await _notices_for(notices, post_id) if n["channel"] == CHANNEL] == [], "never visible"


async def test_a_delete_after_the_post_removes_it(publisher, posts, notices, settings) -> None:
    event = post_parsed(new_id(), new_id(), "soon")
    await publisher.publish(event)
    await eventually(lambda: posts.exists(event.payload.post_id))
    deleted = PostDeleted(payload=PostDeletedData(post_id=event.payload.post_id, author_id=event.payload.author_id))
    await publisher.publish(deleted)
    await publisher.publish(deleted)
    await eventually(lambda: posts.exists(event.payload.post_id), until=lambda live: not live)
    await publisher.publish(event)  # a redelivered post-parsed after the delete
    await caught_up(settings, settings.group("posts"), topics.POST_PARSED)
    await caught_up(settings, settings.group("posts"), topics.POST_DELETED)
    assert not await posts.exists(event.payload.post_id)
    announced = await _notices_for(notices, event.payload.post_id)
    assert [n["channel"] for n in announced] == [CHANNEL, DELETED_CHANNEL], "one each, replays stay quiet"


async def _notices_for(notices: list[dict], post_id: str) -> list[dict]:
    await asyncio.sleep(0)  # let the listener task run
    return [n for n in notices if n["id"] == post_id]
