"""The preparse consumer on the real broker: post-created in, rendered post-parsed out; replays change nothing."""

from __future__ import annotations

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer
from starlette.applications import Starlette

from consumers.preparse import render_post
from schemas import topics
from schemas.events import PostCreated, PostCreatedData, PostParsed, new_id
from store.posts import PostgresPosts
from tests.conftest import eventually
from tests.integration.helpers import opened
from tests.integration.posts_support import caught_up, tail

pytestmark = pytest.mark.usefixtures("pipeline")


async def parsed_for(consumer: AIOKafkaConsumer, pg: asyncpg.Pool, post_id: str, n: int) -> list[PostParsed]:
    found: list[PostParsed] = []

    async def more() -> list[PostParsed]:
        for records in (await consumer.getmany(timeout_ms=200)).values():
            for event in await opened(pg, records):  # preparse seals what it publishes
                if isinstance(event, PostParsed) and event.payload.post_id == post_id:
                    found.append(event)
        return found

    return await eventually(more, until=lambda f: len(f) >= n, timeout=60)


def created(body: str, reply_to: str | None = None) -> PostCreated:
    author = new_id()
    return PostCreated(
        actor=author, correlation_id=f"c-{new_id()}",
        payload=PostCreatedData(post_id=new_id(), author_id=author, body=body, reply_to=reply_to),
    )  # fmt: skip


async def test_a_created_post_is_published_rendered(settings, publisher, pg) -> None:
    event = created("Hi **#Chirp** @Alice <script>x()</script> https://example.org", reply_to="p-1")
    async with tail(settings, topics.POST_PARSED) as consumer:
        await publisher.publish(event)
        [out] = await parsed_for(consumer, pg, event.payload.post_id, 1)
    data = out.payload
    rendered = render_post(event.payload.body)
    assert (data.html, data.text, data.hashtags, data.mentions, data.links) == (
        rendered.html, rendered.text, ("chirp",), ("alice",), ("https://example.org",),
    )  # fmt: skip
    assert "<script" not in data.html
    assert (data.author_id, data.body, data.reply_to) == (event.payload.author_id, event.payload.body, "p-1")
    assert data.created_at == event.occurred_at, "the post's time is when it was created, not when it was parsed"
    assert out.correlation_id == event.correlation_id
    assert out.causation_id == event.id, "a derived event names the event it came from"


async def test_a_replayed_post_created_yields_the_same_post_once(settings, publisher, pg, app: Starlette) -> None:
    event = created("twice #again")
    async with tail(settings, topics.POST_PARSED) as consumer:
        await publisher.publish(event)
        await publisher.publish(event)
        first, second = await parsed_for(consumer, pg, event.payload.post_id, 2)
    assert first.payload == second.payload
    await caught_up(settings, settings.group("posts"), topics.POST_PARSED)
    page = await PostgresPosts(app.state.chirp.pg).by_author(event.payload.author_id, None, 10)
    assert [p.id for p in page.items] == [event.payload.post_id]
    assert page.items[0].created_at == event.occurred_at
