"""The `PostReadModel` contract, run against each backend (PostgreSQL here): writes, tombstones, pages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from chirp.settings import Settings
from schemas.events import PostDeleted, PostDeletedData, PostParsed, PostParsedData, new_id
from store.postgres import connect
from store.posts import PostgresPosts, PostReadModel


def parsed(
    author: str, *, tags: tuple[str, ...] = (), reply_to: str | None = None, at: datetime | None = None,
    post_id: str | None = None, html: str = "<p>hi</p>",
) -> PostParsed:  # fmt: skip
    at = at or datetime.now(UTC)
    return PostParsed(
        occurred_at=at,
        payload=PostParsedData(
            post_id=post_id or new_id(),
            author_id=author,
            body="hi",
            html=html,
            text="hi",
            hashtags=tags,
            reply_to=reply_to,
            created_at=at,
        ),
    )


def deleted(post_id: str, author: str, at: datetime | None = None) -> PostDeleted:
    return PostDeleted(occurred_at=at or datetime.now(UTC), payload=PostDeletedData(post_id=post_id, author_id=author))


class PostReadModelContract:
    """Every backend of the port passes these; a subclass provides the `model` fixture."""

    async def test_same_post_twice_is_one_post_and_one_first_projection(self, model: PostReadModel) -> None:
        event = parsed(new_id())
        first = await model.save_parsed([event, event])
        again = await model.save_parsed([event])
        assert [p.id for p in first] == [event.payload.post_id] and again == []
        page = await model.by_author(event.payload.author_id, None, 10)
        assert [p.id for p in page.items] == [event.payload.post_id]

    async def test_a_newer_rendering_replaces_an_older_one_not_the_reverse(self, model: PostReadModel) -> None:
        now = datetime.now(UTC)
        post_id, author = new_id(), new_id()
        await model.save_parsed([parsed(author, post_id=post_id, at=now, html="<p>v1</p>")])
        assert await model.save_parsed([parsed(author, post_id=post_id, at=now + timedelta(1), html="<p>v2</p>")]) == []
        await model.save_parsed([parsed(author, post_id=post_id, at=now, html="<p>v1</p>")])
        post = await model.get(post_id)
        assert post is not None and post.html == "<p>v2</p>"

    async def test_a_delete_removes_the_post_everywhere(self, model: PostReadModel) -> None:
        author, tag = new_id(), f"t{new_id().lower()}"
        parent = parsed(author, tags=(tag,))
        reply = parsed(author, tags=(tag,), reply_to=parent.payload.post_id)
        await model.save_parsed([parent, reply])
        assert (await model.get(parent.payload.post_id)).reply_count == 1  # type: ignore[union-attr]
        assert await model.save_deleted([deleted(reply.payload.post_id, author)] * 2) == [reply.payload.post_id]
        assert await model.get(reply.payload.post_id) is None
        assert not await model.exists(reply.payload.post_id)
        assert (await model.get(parent.payload.post_id)).reply_count == 0  # type: ignore[union-attr]
        assert (await model.replies(parent.payload.post_id, None, 10)).items == []
        assert [p.id for p in (await model.by_tag(tag, None, 10)).items] == [parent.payload.post_id]
        assert [p.id for p in (await model.by_author(author, None, 10)).items] == [parent.payload.post_id]
        assert reply.payload.post_id not in {p.id for p in (await model.latest(None, 100)).items}

    async def test_a_delete_before_the_post_leaves_a_tombstone_it_cannot_pass(self, model: PostReadModel) -> None:
        event = parsed(new_id())
        assert await model.save_deleted([deleted(event.payload.post_id, event.payload.author_id)]) == [
            event.payload.post_id
        ]
        assert await model.save_parsed([event]) == []
        assert await model.save_parsed([parsed(event.payload.author_id, post_id=event.payload.post_id,
                                               at=datetime.now(UTC) + timedelta(days=1))]) == []  # fmt: skip
        assert await model.get(event.payload.post_id) is None
        assert (await model.by_author(event.payload.author_id, None, 10)).items == []

    async def test_a_delete_naming_another_author_changes_nothing(self, model: PostReadModel) -> None:
        event = parsed(new_id())
        await model.save_parsed([event])
        assert await model.save_deleted([deleted(event.payload.post_id, "someone-else")]) == []
        assert await model.exists(event.payload.post_id)

    async def test_pages_are_stable_under_inserts(self, model: PostReadModel) -> None:
        author = new_id()
        originals = [parsed(author) for _ in range(5)]
        await model.save_parsed(originals)
        seen: list[str] = []
        after = None
        while True:
            page = await model.by_author(author, after, 2)
            seen += [p.id for p in page.items]
            await model.save_parsed([parsed(author)])  # newer posts arriving between pages
            if page.last is None:
                break
            after = page.last
        assert seen == sorted((e.payload.post_id for e in originals), reverse=True)

    async def test_latest_is_newest_first_from_the_cursor(self, model: PostReadModel) -> None:
        author = new_id()
        events = [parsed(author) for _ in range(3)]
        await model.save_parsed(events)
        newest = max(e.payload.post_id for e in events)
        page = await model.latest(newest, 100)
        ids = [p.id for p in page.items]
        assert ids == sorted(ids, reverse=True) and all(i < newest for i in ids)
        ours = [i for i in ids if i in {e.payload.post_id for e in events}]
        assert ours == sorted((e.payload.post_id for e in events), reverse=True)[1:]

    async def test_replies_oldest_first_and_counted(self, model: PostReadModel) -> None:
        author = new_id()
        parent = parsed(author)
        replies = [parsed(new_id(), reply_to=parent.payload.post_id) for _ in range(3)]
        await model.save_parsed(replies)  # replies may be projected before their parent
        await model.save_parsed([parent])
        first = await model.replies(parent.payload.post_id, None, 2)
        rest = await model.replies(parent.payload.post_id, first.last, 2)
        assert [p.id for p in first.items + rest.items] == sorted(r.payload.post_id for r in replies)
        assert rest.last is None
        assert (await model.get(parent.payload.post_id)).reply_count == 3  # type: ignore[union-attr]

    async def test_tags_match_whole_keys(self, model: PostReadModel) -> None:
        tag = f"t{new_id().lower()}"
        tagged, other = parsed(new_id(), tags=(tag, "x")), parsed(new_id(), tags=(tag + "x",))
        await model.save_parsed([tagged, other])
        assert [p.id for p in (await model.by_tag(tag, None, 10)).items] == [tagged.payload.post_id]


class TestPostgresPosts(PostReadModelContract):
    @pytest.fixture
    async def pool(self, settings: Settings) -> AsyncIterator[asyncpg.Pool]:
        pool = await connect(settings, max_size=2)
        yield pool
        await pool.close()

    @pytest.fixture
    def model(self, pool: asyncpg.Pool) -> PostReadModel:
        return PostgresPosts(pool)

    async def test_authors_come_from_users_or_stay_empty(self, pool: asyncpg.Pool, model: PostReadModel) -> None:
        known, unknown = parsed(new_id()), parsed(new_id())
        handle = f"h{new_id()[-10:].lower()}"
        await pool.execute(
            "INSERT INTO users (user_id, handle, display_name, avatar_url, joined_at, profile_at)"
            " VALUES ($1, $2, 'Known One', 'https://a/x.png', now(), now())",
            known.payload.author_id, handle,
        )  # fmt: skip
        await model.save_parsed([known, unknown])
        a, b = await model.get(known.payload.post_id), await model.get(unknown.payload.post_id)
        assert a is not None and (a.handle, a.display_name, a.avatar_url) == (handle, "Known One", "https://a/x.png")
        assert b is not None and (b.author_id, b.handle, b.display_name, b.avatar_url) == (
            unknown.payload.author_id, "", "", "",
        )  # fmt: skip
        assert await model.user_id_of(handle.upper()) == known.payload.author_id
        assert await model.user_id_of("no-such-" + handle) is None
