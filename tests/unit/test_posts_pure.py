"""The pure parts of the posts path: request validation, tag keys, `Prefer: wait`, events and notices."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from consumers.posts import notice
from consumers.preparse import parsed, render_post
from gateway.errors import InvalidInput
from gateway.routes.posts import MAX_WAIT_S, tag_key, validate_post, wait_seconds
from schemas.events import PostCreated, PostCreatedData, PostParsed, PostParsedData, new_id
from store.posts import Projected, newest_per_post


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({}, "body"),
        ({"body": None}, "body"),
        ({"body": 5}, "body"),
        ({"body": ""}, "body"),
        ({"body": " \n\t\u3000"}, "body"),
        ({"body": "x" * 2001}, "body"),
        ({"body": "a\x00b"}, "body"),
        ({"body": "ok", "reply_to": 5}, "reply_to"),
        ({"body": "ok", "reply_to": ""}, "reply_to"),
        ({"body": "ok", "reply_to": "x" * 65}, "reply_to"),
        ({"body": "ok", "replyTo": "x"}, "replyTo"),
    ],
)
def test_invalid_posts_name_the_field(data: dict, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_post(data)
    assert caught.value.field == field


def test_valid_posts_keep_the_body_as_written() -> None:
    assert validate_post({"body": "x" * 2000}) == ("x" * 2000, None)
    assert validate_post({"body": "  *hi*\n", "reply_to": None}) == ("  *hi*\n", None)
    assert validate_post({"body": "é" * 2000, "reply_to": "01ABC"}) == ("é" * 2000, "01ABC")  # characters, not bytes


@pytest.mark.parametrize(("raw", "key"), [("Python", "python"), ("#Rust", "rust"), ("STRASSE", "strasse"),
                                          ("Straße", "strasse"), ("Cafe\u0301", "café")])  # fmt: skip
def test_tag_keys_match_the_renderers(raw: str, key: str) -> None:
    assert tag_key(raw) == key
    assert render_post(f"#{raw.removeprefix('#')}").hashtags == (key,)


@pytest.mark.parametrize("raw", ["", "#", "x" * 101])
def test_bad_tags_are_422(raw: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        tag_key(raw)
    assert caught.value.field == "tag"


@pytest.mark.parametrize(
    ("prefer", "seconds"),
    [(None, 0.0), ("", 0.0), ("respond-async", 0.0), ("wait", MAX_WAIT_S), ("Wait=0.25", 0.25), ("wait=30", MAX_WAIT_S),
     ("return=minimal, wait=0.5", 0.5), ("wait=abc", MAX_WAIT_S), ("wait=-1", 0.0), ('wait="0.2"', 0.2)],
)  # fmt: skip
def test_prefer_wait_is_read_and_capped(prefer: str | None, seconds: float) -> None:
    assert wait_seconds(prefer) == seconds


def test_parsed_keeps_the_post_and_its_creation_time() -> None:
    created = PostCreated(
        correlation_id="req-1",
        actor="u1",
        occurred_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        payload=PostCreatedData(post_id=new_id(), author_id="u1", body="hi #Tag <b>x</b>", reply_to="p0"),
    )
    event = parsed(created, render_post(created.payload.body))
    data = event.payload
    assert (data.post_id, data.author_id, data.body, data.reply_to) == (
        created.payload.post_id, "u1", "hi #Tag <b>x</b>", "p0",
    )  # fmt: skip
    assert data.created_at == created.occurred_at
    assert event.correlation_id == "req-1" and event.actor == "u1"
    assert data.hashtags == ("tag",) and "<b>" not in data.html and "&lt;b&gt;" in data.html
    assert parsed(created, render_post(created.payload.body)).payload == data, "same input, same payload"


def _parsed(post_id: str, at: datetime, html: str) -> PostParsed:
    return PostParsed(
        occurred_at=at,
        payload=PostParsedData(post_id=post_id, author_id="a", body="b", html=html, text="b", created_at=at),
    )


def test_newest_per_post_keeps_one_event_per_post_the_newest() -> None:
    now = datetime.now(UTC)
    a, b = new_id(), new_id()
    events = [_parsed(a, now, "new"), _parsed(a, now - timedelta(seconds=1), "old"), _parsed(b, now, "b")]
    kept = {e.payload.post_id: e.payload.html for e in newest_per_post(events)}
    assert kept == {a: "new", b: "b"}


def test_the_notice_has_exactly_the_live_update_fields() -> None:
    body = orjson.loads(notice(Projected("p1", "u1", None, ["a", "b"])))
    assert body == {"id": "p1", "author_id": "u1", "reply_to": None, "hashtags": ["a", "b"]}
