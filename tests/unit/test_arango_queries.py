"""Pure parts of the ArangoDB posts adapter (store/arango.py): time stamps, page queries, documents, pages."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from schemas.events import PostDeleted, PostDeletedData, PostParsed, PostParsedData, new_id
from store.arango import (
    BY_AUTHOR,
    BY_KEY,
    BY_TAG,
    EVERYONE,
    REPLIES_TO,
    first_deletes,
    page_of,
    page_query,
    post_document,
    stamp,
)

AT = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def row(post_id: str) -> dict[str, object]:
    return {"id": post_id, "author_id": "a", "handle": "h", "display_name": "H", "avatar_url": "", "body": "b",
            "html": "<p>b</p>", "text": "b", "hashtags": ["t"], "mentions": [], "reply_to": None, "reply_count": 2,
            "created_at": stamp(AT)}  # fmt: skip


def test_a_stamp_is_fixed_width_utc() -> None:
    assert stamp(AT) == "2026-03-01T12:00:00.000000+00:00"
    assert stamp(AT.replace(tzinfo=None)) == stamp(AT)  # naive means UTC
    assert stamp(AT.astimezone(timezone(timedelta(hours=-5)))) == stamp(AT)
    assert datetime.fromisoformat(stamp(AT)) == AT


def test_stamp_order_is_time_order() -> None:
    # Whole seconds, microseconds and other offsets: plain isoformat() would not sort these as strings.
    times = [AT, AT + timedelta(microseconds=1), AT + timedelta(microseconds=500_000), AT - timedelta(days=400),
             AT.astimezone(timezone(timedelta(hours=9))) + timedelta(seconds=1),
             AT.astimezone(timezone(timedelta(hours=-3))) - timedelta(microseconds=1)]  # fmt: skip
    assert sorted(times, key=stamp) == sorted(times)
    assert len({len(stamp(t)) for t in times}) == 1


@pytest.mark.parametrize("where", [BY_KEY, EVERYONE, BY_AUTHOR, BY_TAG, REPLIES_TO])
def test_page_queries_take_values_only_as_bind_variables(where: str) -> None:
    query = page_query(where, desc=True, after=False)
    assert set(re.findall(r"@(\w+)", query)) == ({"limit", "value"} if "@value" in where else {"limit"})
    assert "@after" in page_query(where, desc=True, after=True)
    assert "$" not in query and where in query


def test_lists_walk_down_from_the_cursor_and_replies_walk_up() -> None:
    newest_first = page_query(BY_AUTHOR, desc=True, after=True)
    assert "p._key < @after" in newest_first and "SORT p._key DESC" in newest_first
    oldest_first = page_query(REPLIES_TO, desc=False, after=True)
    assert "p._key > @after" in oldest_first and "SORT p._key ASC" in oldest_first
    first = page_query(EVERYONE, desc=True, after=False)
    assert "p._key <" not in first and "p._key >" not in first  # a first page has no cursor condition


def test_every_page_hides_tombstones() -> None:
    for desc in (True, False):
        assert "p.deleted_at == null" in page_query(EVERYONE, desc=desc, after=False)


def test_a_page_ends_where_no_extra_row_came_back() -> None:
    ids = sorted((new_id() for _ in range(3)), reverse=True)
    more = page_of([row(i) for i in ids], 2)
    assert [p.id for p in more.items] == ids[:2] and more.last == ids[1]
    last = page_of([row(i) for i in ids], 3)
    assert [p.id for p in last.items] == ids and last.last is None
    assert page_of([], 5).items == [] and page_of([], 5).last is None


def test_a_row_becomes_a_view_with_an_aware_time() -> None:
    view = page_of([row("p1")], 1).items[0]
    assert (view.id, view.reply_count, view.hashtags, view.created_at) == ("p1", 2, ["t"], AT)
    assert view.created_at.tzinfo is not None


def test_a_parsed_post_becomes_a_live_document_keyed_by_post_id() -> None:
    event = PostParsed(
        occurred_at=AT + timedelta(seconds=1),
        payload=PostParsedData(post_id="p1", author_id="a1", body="b", html="<p>b</p>", text="b", hashtags=("x",),
                               mentions=("m",), links=("https://l",), reply_to="p0", created_at=AT),
    )  # fmt: skip
    doc = post_document(event)
    assert doc["_key"] == "p1" and doc["deleted_at"] is None
    assert (doc["hashtags"], doc["mentions"], doc["links"]) == (["x"], ["m"], ["https://l"])
    assert doc["created_at"] == stamp(AT) and doc["parsed_at"] == stamp(AT + timedelta(seconds=1))
    assert doc["reply_to"] == "p0" and doc["author_id"] == "a1"


def test_deletes_keep_the_earliest_per_post_in_first_seen_order() -> None:
    def delete(post_id: str, author: str, seconds: int) -> PostDeleted:
        return PostDeleted(occurred_at=AT + timedelta(seconds=seconds),
                           payload=PostDeletedData(post_id=post_id, author_id=author))  # fmt: skip

    rows = first_deletes([delete("b", "late", 5), delete("a", "x", 2), delete("b", "early", 1), delete("a", "x", 2)])
    assert rows == [
        {"_key": "b", "author_id": "early", "at": stamp(AT + timedelta(seconds=1))},
        {"_key": "a", "author_id": "x", "at": stamp(AT + timedelta(seconds=2))},
    ]
    assert first_deletes([]) == []
