"""The `PostReadModel` contract, run against each backend (PostgreSQL; ArangoDB when `CHIRP_ARANGO_URL` is set)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from arango import ArangoClient
from arango.database import StandardDatabase

from chirp.settings import Settings
from schemas.events import PostDeleted, PostDeletedData, PostParsed, PostParsedData, new_id
from store.arango import INDEXES, ArangoPosts, connect_arango
from store.postgres import connect
from store.posts import PostgresPosts, PostReadModel

AddAuthor = Callable[[str, str, str, str], Awaitable[None]]  # (user_id, handle, display_name, avatar_url)


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
    """Every backend of the port passes these; a subclass provides the `model` and `add_author` fixtures."""

    async def test_same_post_twice_is_one_post_and_one_first_projection(self, model: PostReadModel) -> None:
        event = parsed(new_id())
        first = await model.save_parsed([event, event])
        again = await model.save_parsed([event])
        assert [p.id for p in first] == [event.payload.post_id] and again == []
        page = await model.by_author(event.payload.author_id, None, 10)
        assert [p.id for p in page.items] == [event.payload.post_id]

    async def test_array_fields_keep_every_element_as_written(self, model: PostReadModel) -> None:
        awkward = ('"quoted"', "back\\slash", "a,b", "{braces}", "NULL", "", " spaced ", "é🙂")
        event = parsed(new_id())  # the event models refuse such tags and mentions; the store must still keep them
        awkward_payload = {"hashtags": awkward, "mentions": awkward[::-1]}
        event = event.model_copy(update={"payload": event.payload.model_copy(update=awkward_payload)})
        await model.save_parsed([event])
        post = await model.get(event.payload.post_id)
        assert post is not None
        assert tuple(post.hashtags) == awkward and tuple(post.mentions) == awkward[::-1]

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

    async def test_author_names_join_from_users(self, model: PostReadModel, add_author: AddAuthor) -> None:
        known, stub, unknown = parsed(new_id()), parsed(new_id()), parsed(new_id())
        handle = f"h{new_id()[-10:].lower()}"
        await add_author(known.payload.author_id, handle, "Known One", "https://a/x.png")
        await add_author(stub.payload.author_id, "~" + stub.payload.author_id, "", "")  # handle not known yet
        await model.save_parsed([known, stub, unknown])
        a, s, b = [await model.get(e.payload.post_id) for e in (known, stub, unknown)]
        assert a is not None and (a.handle, a.display_name, a.avatar_url) == (handle, "Known One", "https://a/x.png")
        assert s is not None and s.handle == ""
        assert b is not None and (b.author_id, b.handle, b.display_name, b.avatar_url) == (
            unknown.payload.author_id, "", "", "",
        )  # fmt: skip
        assert await model.user_id_of(handle.upper()) == known.payload.author_id
        assert await model.user_id_of("no-such-" + handle) is None


class TestPostgresPosts(PostReadModelContract):
    @pytest.fixture
    async def pool(self, settings: Settings) -> AsyncIterator[asyncpg.Pool]:
        pool = await connect(settings, max_size=2)
        yield pool
        await pool.close()

    @pytest.fixture
    def model(self, pool: asyncpg.Pool) -> PostReadModel:
        return PostgresPosts(pool)

    @pytest.fixture
    def add_author(self, pool: asyncpg.Pool) -> AddAuthor:
        async def add(user_id: str, handle: str, display_name: str, avatar_url: str) -> None:
            await pool.execute(
                "INSERT INTO users (user_id, handle, display_name, avatar_url, joined_at, profile_at)"
                " VALUES ($1, $2, $3, $4, now(), now())",
                user_id, handle, display_name, avatar_url,
            )  # fmt: skip

        return add

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


@pytest.fixture(scope="session")
def arango_settings(settings: Settings) -> Iterator[Settings]:
    """Settings naming a fresh ArangoDB database for this session, dropped at the end."""
    if not settings.arango_url:
        reason = "CHIRP_ARANGO_URL is not set: no ArangoDB server to test against"
        pytest.skip(f"{reason} (`docker compose --profile arango up arangodb` starts one on 127.0.0.1:8529)")
    scoped = settings.model_copy(update={"arango_db": f"chirp_test_{new_id().lower()}"})
    yield scoped
    client = ArangoClient(hosts=settings.arango_url)
    system = client.db("_system", username=settings.arango_user, password=settings.arango_password.get_secret_value())
    system.delete_database(scoped.arango_db, ignore_missing=True)
    client.close()


@pytest.fixture(scope="session")
def arango_db(arango_settings: Settings) -> Iterator[StandardDatabase]:
    client = ArangoClient(hosts=arango_settings.arango_url)
    yield connect_arango(arango_settings, client)
    client.close()


class TestArangoPosts(PostReadModelContract):
    @pytest.fixture
    def model(self, arango_db: StandardDatabase) -> PostReadModel:  # the annotation checks the port is complete
        return ArangoPosts(arango_db)

    @pytest.fixture
    def add_author(self, arango_db: StandardDatabase) -> AddAuthor:
        return ArangoPosts(arango_db).save_user

    async def test_reconnecting_keeps_posts_and_indexes(self, arango_settings: Settings, model: PostReadModel) -> None:
        event = parsed(new_id())
        await model.save_parsed([event])
        client = ArangoClient(hosts=arango_settings.arango_url)
        try:
            again = await asyncio.to_thread(connect_arango, arango_settings, client)
            assert await ArangoPosts(again).exists(event.payload.post_id)
            for name, wanted in INDEXES.items():
                indexes = again.collection(name).indexes()
                assert isinstance(indexes, list)
                assert {i["name"] for i in wanted} <= {i["name"] for i in indexes}
        finally:
            client.close()
