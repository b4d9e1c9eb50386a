"""Pure parts of the ArangoDB posts adapter (store/arango.py): time stamps, page queries, documents, pages."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from schemas.events import PostDeleted, PostDeletedData, PostParsed, PostParsedData, new_id
from store.arango import (
    _CHILDREN,
    _MORE_CHILDREN,
    BY_AUTHOR,
    BY_KEY,
    BY_KEYS,
    BY_TAG,
    EVERYONE,
    REPLIES_TO,
    authors_named,
    first_deletes,
    page_of,
    page_query,
    post_document,
    shown_of,
    stamp,
    version_documents,
)
from store.posts import Author, Tombstone

AT = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


AUTHORS = {"a": Author("h", "H", "https://a/x.png"), "p": Author("parent", "P", "")}


def row(post_id: str, **more: object) -> dict[str, object]:
    return {"id": post_id, "author_id": "a", "body": "b", "html": "<p>b</p>", "text": "b", "hashtags": ["t"],
            "mentions": [], "reply_to": None, "reply_count": 2, "created_at": stamp(AT), "edited_at": None,
            "reply_to_author": None, **more}  # fmt: skip


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


@pytest.mark.parametrize("where", [BY_KEY, BY_KEYS, EVERYONE, BY_AUTHOR, BY_TAG, REPLIES_TO])
def test_page_queries_take_values_only_as_bind_variables(where: str) -> None:
    query = page_query(where, desc=True, after=False)
    assert set(re.findall(r"@(\w+)", query)) == ({"limit", "value"} if "@value" in where else {"limit"})
    assert "@after" in page_query(where, desc=True, after=True)
    assert "p.author_id NOT IN @hidden" in page_query(where, desc=True, after=False, hidden=True)
    assert "@hidden" not in query  # AQL refuses a bind variable the query does not use
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
    more = page_of([row(i) for i in ids], 2, AUTHORS)
    assert [p.id for p in more.items] == ids[:2] and more.last == ids[1]
    last = page_of([row(i) for i in ids], 3, AUTHORS)
    assert [p.id for p in last.items] == ids and last.last is None
    assert page_of([], 5, {}).items == [] and page_of([], 5, {}).last is None


def test_a_row_becomes_a_view_with_aware_times_and_its_authors_names() -> None:
    view = page_of([row("p1")], 1, AUTHORS).items[0]
    assert (view.id, view.reply_count, view.hashtags, view.created_at, view.edited_at) == ("p1", 2, ["t"], AT, None)
    assert view.created_at.tzinfo is not None
    assert (view.handle, view.display_name, view.avatar_url, view.reply_to_handle) == ("h", "H", "https://a/x.png", "")
    edited = page_of([row("p2", edited_at=stamp(AT + timedelta(minutes=1)), reply_to="p0", reply_to_author="p")], 1,
                     AUTHORS).items[0]  # fmt: skip
    assert edited.edited_at == AT + timedelta(minutes=1) and edited.reply_to_handle == "parent"
    unknown = page_of([row("p3", author_id="nobody")], 1, AUTHORS).items[0]
    assert (unknown.author_id, unknown.handle, unknown.display_name, unknown.avatar_url) == ("nobody", "", "", "")


def test_a_page_asks_the_names_of_its_authors_and_of_those_it_replies_to() -> None:
    assert authors_named([row("p1"), row("p2", author_id="b", reply_to_author="p")]) == {"a", "b", "p"}


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
    assert doc["edited_at"] is None and doc["moderated"] is False
    edit = event.model_copy(update={"payload": event.payload.model_copy(update={"edited_at": AT + timedelta(1)})})
    assert post_document(edit)["edited_at"] == stamp(AT + timedelta(1))


def test_versions_are_keyed_by_post_and_version_time_the_last_render_winning() -> None:
    def render(html: str, edited: datetime | None) -> PostParsed:
        data = PostParsedData(post_id="p1", author_id="a", body="b", html=html, text="b", created_at=AT,
                              edited_at=edited)  # fmt: skip
        return PostParsed(occurred_at=AT, payload=data)

    later = AT + timedelta(minutes=5)
    docs = version_documents([render("<p>1</p>", None), render("<p>2</p>", later), render("<p>1 again</p>", None)])
    assert [(d["_key"], d["at"], d["html"]) for d in docs] == [
        (f"p1:{stamp(AT)}", stamp(AT), "<p>1 again</p>"), (f"p1:{stamp(later)}", stamp(later), "<p>2</p>"),
    ]  # fmt: skip


def test_deletes_keep_the_earliest_per_post_in_first_seen_order() -> None:
    def delete(post_id: str, author: str, seconds: int) -> PostDeleted:
        return PostDeleted(occurred_at=AT + timedelta(seconds=seconds),
                           payload=PostDeletedData(post_id=post_id, author_id=author))  # fmt: skip

    rows = first_deletes([delete("b", "late", 5), delete("a", "x", 2), delete("b", "early", 1), delete("a", "x", 2)])
    assert rows == [
        {"_key": "b", "author_id": "early", "at": stamp(AT + timedelta(seconds=1)), "moderated": False},
        {"_key": "a", "author_id": "x", "at": stamp(AT + timedelta(seconds=2)), "moderated": False},
    ]
    assert first_deletes([]) == []


def test_conversation_queries_bind_every_value() -> None:
    assert set(re.findall(r"@(\w+)", _CHILDREN)) == {"parents", "hidden", "op", "n"}
    assert set(re.findall(r"@(\w+)", _MORE_CHILDREN)) == {"parent", "hidden", "op", "later", "after", "limit"}


def test_a_deleted_row_of_a_conversation_is_a_tombstone() -> None:
    assert shown_of(row("p1", deleted=True, reply_to="p0"), AUTHORS) == Tombstone("p1", "p0", AT)
    assert shown_of(row("p2", deleted=False), AUTHORS).id == "p2"
