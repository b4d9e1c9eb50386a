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
from store.arango import INDEXES, ArangoPosts, connect_arango, reset_collections
from store.postgres import connect
from store.posts import PostgresAuthors, PostgresPosts, PostReadModel, PostView, Tombstone

AddAuthor = Callable[[str, str, str, str], Awaitable[None]]  # (user_id, handle, display_name, avatar_url)


def parsed(
    author: str, *, tags: tuple[str, ...] = (), reply_to: str | None = None, at: datetime | None = None,
    post_id: str | None = None, html: str = "<p>hi</p>", created_at: datetime | None = None,
    edited_at: datetime | None = None, body: str = "hi",
) -> PostParsed:  # fmt: skip
    at = at or datetime.now(UTC)
    return PostParsed(
        occurred_at=at,
        payload=PostParsedData(
            post_id=post_id or new_id(),
            author_id=author,
            body=body,
            html=html,
            text=body,
            hashtags=tags,
            reply_to=reply_to,
            created_at=created_at or at,
            edited_at=edited_at,
        ),
    )


def deleted(post_id: str, author: str, at: datetime | None = None, *, moderated: bool = False) -> PostDeleted:
    return PostDeleted(
        occurred_at=at or datetime.now(UTC),
        payload=PostDeletedData(post_id=post_id, author_id=author, moderated=moderated),
    )


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await connect(settings, max_size=2)
    yield pool
    await pool.close()


@pytest.fixture
def add_author(pool: asyncpg.Pool) -> AddAuthor:
    """Authors are the users read model's, in PostgreSQL on either store."""

    async def add(user_id: str, handle: str, display_name: str, avatar_url: str) -> None:
        await pool.execute(
            "INSERT INTO users (user_id, handle, display_name, avatar_url, joined_at, profile_at)"
            " VALUES ($1, $2, $3, $4, now(), now())",
            user_id, handle, display_name, avatar_url,
        )  # fmt: skip

    return add


class PostReadModelContract:
    """Every backend of the port passes these; a subclass provides the `model` fixture."""

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

    async def test_many_returns_the_live_posts_among_the_ids(self, model: PostReadModel) -> None:
        author = new_id()
        live, gone = parsed(author), parsed(author)
        await model.save_parsed([live, gone])
        await model.save_deleted([deleted(gone.payload.post_id, author)])
        found = await model.many([live.payload.post_id, gone.payload.post_id, new_id()])
        assert [p.id for p in found] == [live.payload.post_id]
        assert await model.many([]) == []

    async def test_author_of_a_live_post_only(self, model: PostReadModel) -> None:
        event = parsed(new_id())
        await model.save_parsed([event])
        assert await model.author_of(event.payload.post_id) == event.payload.author_id
        await model.save_deleted([deleted(event.payload.post_id, event.payload.author_id)])
        assert await model.author_of(event.payload.post_id) is None
        assert await model.author_of(new_id()) is None

    async def test_hidden_authors_are_left_out_of_every_list(self, model: PostReadModel) -> None:
        shown, hidden, tag = new_id(), new_id(), f"t{new_id().lower()}"
        parent = parsed(shown, tags=(tag,))
        mine, theirs = parsed(shown, tags=(tag,), reply_to=parent.payload.post_id), parsed(hidden, tags=(tag,))
        reply = parsed(hidden, reply_to=parent.payload.post_id)
        await model.save_parsed([parent, mine, theirs, reply])
        ids = {e.payload.post_id for e in (parent, mine, theirs, reply)}
        latest = {p.id for p in (await model.latest(None, 1000, hidden=[hidden])).items} & ids
        assert latest == {parent.payload.post_id, mine.payload.post_id}
        assert {p.id for p in (await model.by_tag(tag, None, 10, hidden=[hidden])).items} == latest
        assert (await model.by_author(hidden, None, 10, hidden=[hidden])).items == []
        replies = await model.replies(parent.payload.post_id, None, 10, hidden=[hidden])
        assert [p.id for p in replies.items] == [mine.payload.post_id]

    async def test_the_newest_version_shows_and_every_version_is_kept(self, model: PostReadModel) -> None:
        created = datetime.now(UTC)
        post_id, author = new_id(), new_id()
        first = parsed(author, post_id=post_id, at=created, body="v1", html="<p>v1</p>")
        edits = [parsed(author, post_id=post_id, at=created + timedelta(minutes=m), created_at=created, body=f"v{m}",
                        html=f"<p>v{m}</p>", edited_at=created + timedelta(minutes=m)) for m in (2, 3)]  # fmt: skip
        await model.save_parsed([edits[1]])  # the newest edit first, then the rest in any order
        await model.save_parsed([first, edits[0]])
        post = await model.get(post_id)
        assert post is not None and (post.body, post.html) == ("v3", "<p>v3</p>")
        assert post.edited_at == edits[1].payload.edited_at
        assert post.created_at == created
        versions = await model.history(post_id)
        assert [(v.body, v.at) for v in versions] == [
            ("v3", created + timedelta(minutes=3)), ("v2", created + timedelta(minutes=2)), ("v1", created),
        ]  # fmt: skip
        rerender = parsed(
            author,
            post_id=post_id,
            at=created + timedelta(hours=1),
            created_at=created,
            body="v1",
            html="<p>v1 again</p>",
        )  # a later render of the first version does not replace an edit
        await model.save_parsed([rerender])
        post = await model.get(post_id)
        assert post is not None and post.body == "v3"
        assert [v.html for v in await model.history(post_id)][-1] == "<p>v1 again</p>"
        await model.save_deleted([deleted(post_id, author)])
        assert await model.history(post_id) == []

    async def test_taken_down_names_the_author_of_a_moderated_delete_only(self, model: PostReadModel) -> None:
        author = new_id()
        moderated, removed, live = parsed(author), parsed(author), parsed(author)
        await model.save_parsed([moderated, removed, live])
        await model.save_deleted([deleted(moderated.payload.post_id, author, moderated=True),
                                  deleted(removed.payload.post_id, author)])  # fmt: skip
        assert await model.taken_down(moderated.payload.post_id) == author
        assert await model.taken_down(removed.payload.post_id) is None
        assert await model.taken_down(live.payload.post_id) is None

    async def test_a_reply_names_the_replied_to_author(self, model: PostReadModel, add_author: AddAuthor) -> None:
        handle = f"h{new_id()[-10:].lower()}"
        parent = parsed(new_id())
        await add_author(parent.payload.author_id, handle, "Parent", "")
        reply = parsed(new_id(), reply_to=parent.payload.post_id)
        await model.save_parsed([parent, reply])
        post = await model.get(reply.payload.post_id)
        assert post is not None and post.reply_to_handle == handle

    async def test_states_tell_live_from_tombstoned_and_skip_unknown_ids(self, model: PostReadModel) -> None:
        author = new_id()
        live, gone, early = parsed(author), parsed(author), new_id()
        await model.save_parsed([live, gone])
        await model.save_deleted([deleted(gone.payload.post_id, author), deleted(early, author)])
        unknown = new_id()
        assert await model.states([live.payload.post_id, gone.payload.post_id, early, unknown]) == {
            live.payload.post_id: False, gone.payload.post_id: True, early: True,
        }  # fmt: skip
        assert await model.states([]) == {}

    async def test_authors_ids_and_counts_by_author_are_of_live_posts(self, model: PostReadModel) -> None:
        author, other = new_id(), new_id()
        mine = [parsed(author) for _ in range(3)]
        theirs = parsed(other)
        await model.save_parsed([*mine, theirs])
        await model.save_deleted([deleted(mine[1].payload.post_id, author)])
        ids = [mine[0].payload.post_id, mine[1].payload.post_id, theirs.payload.post_id]
        assert await model.authors_of(ids) == {mine[0].payload.post_id: author, theirs.payload.post_id: other}
        assert await model.authors_of([]) == {}
        assert await model.ids_by_author(author) == [mine[0].payload.post_id, mine[2].payload.post_id]
        assert await model.count_by_author(author) == 2 and await model.count_by_author(new_id()) == 0

    async def test_recent_and_newest_ids_of_authors(self, model: PostReadModel) -> None:
        a, b, quiet = new_id(), new_id(), new_id()
        posts = [parsed(author) for author in (a, b, a, b, a)]  # ids grow in this order
        await model.save_parsed(posts)
        ids = [e.payload.post_id for e in posts]
        assert await model.recent_ids([a, b, quiet], 2) == {a: [ids[4], ids[2]], b: [ids[3], ids[1]], quiet: []}
        assert await model.newest_ids([a, b], "", 3) == [(ids[4], a), (ids[3], b), (ids[2], a)]
        assert await model.newest_ids([a, b], ids[2], 10) == [(ids[4], a), (ids[3], b)]
        assert await model.newest_ids([], "", 10) == []

    async def test_timeline_items_merge_ids_with_authors_newest_before_the_cursor(self, model: PostReadModel) -> None:
        fanned, big = new_id(), new_id()
        posts = [parsed(author) for author in (fanned, big, fanned, big, big)]
        await model.save_parsed(posts)
        await model.save_deleted([deleted(posts[2].payload.post_id, fanned)])
        ids = [e.payload.post_id for e in posts]
        page = await model.timeline_items([ids[0], ids[2]], [big], None, 10)
        assert [p.id for p in page] == [ids[4], ids[3], ids[1], ids[0]]
        assert [p.id for p in await model.timeline_items([ids[0]], [big], ids[4], 2)] == [ids[3], ids[1]]
        assert [p.id for p in await model.timeline_items([ids[0]], [], None, 10)] == [ids[0]]
        assert await model.timeline_items([], [], None, 10) == []

    async def test_ancestors_root_first_with_deleted_ones_as_tombstones(self, model: PostReadModel) -> None:
        author = new_id()
        root = parsed(author)
        middle = parsed(author, reply_to=root.payload.post_id)
        leaf = parsed(new_id(), reply_to=middle.payload.post_id)
        await model.save_parsed([root, middle, leaf])
        await model.save_deleted([deleted(middle.payload.post_id, author)])
        chain = await model.ancestors(leaf.payload.post_id, 200)
        assert [p.id for p in chain] == [root.payload.post_id, middle.payload.post_id]
        assert isinstance(chain[0], PostView) and isinstance(chain[1], Tombstone)
        assert chain[1].reply_to == root.payload.post_id
        assert [p.id for p in await model.ancestors(leaf.payload.post_id, 1)] == [middle.payload.post_id]
        assert await model.ancestors(root.payload.post_id, 200) == []

    async def test_replies_of_a_level_op_first_then_oldest_and_continued(self, model: PostReadModel) -> None:
        op, other, hidden = new_id(), new_id(), new_id()
        root = parsed(op)
        first, by_op, second, unseen = (parsed(a, reply_to=root.payload.post_id) for a in (other, op, other, hidden))
        gone = parsed(other, reply_to=root.payload.post_id)
        below_gone = parsed(op, reply_to=gone.payload.post_id)
        empty_gone = parsed(other, reply_to=root.payload.post_id)
        await model.save_parsed([root, first, by_op, second, unseen, gone, below_gone, empty_gone])
        await model.save_deleted([deleted(gone.payload.post_id, other), deleted(empty_gone.payload.post_id, other)])
        level = await model.children([root.payload.post_id], op, 10, [hidden])
        assert [(p.id, later) for p, later in level] == [
            (by_op.payload.post_id, 0), (first.payload.post_id, 1), (second.payload.post_id, 1),
            (gone.payload.post_id, 1),
        ]  # fmt: skip
        assert isinstance(level[-1][0], Tombstone)  # deleted, but a live reply hangs below it
        assert len(await model.children([root.payload.post_id], op, 2, [hidden])) == 2
        rest = await model.more_children(root.payload.post_id, op, (1, first.payload.post_id), 10, [hidden])
        assert [p.id for p, _ in rest] == [second.payload.post_id, gone.payload.post_id]
        start = await model.more_children(root.payload.post_id, op, (-1, ""), 1, [])
        assert [p.id for p, _ in start] == [by_op.payload.post_id]


class TestPostgresPosts(PostReadModelContract):
    @pytest.fixture
    def model(self, pool: asyncpg.Pool) -> PostReadModel:
        return PostgresPosts(pool)


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
    def model(self, arango_db: StandardDatabase, pool: asyncpg.Pool) -> PostReadModel:  # the annotation checks the port
        return ArangoPosts(arango_db, PostgresAuthors(pool))

    async def test_reconnecting_keeps_posts_and_indexes(
        self, arango_settings: Settings, model: PostReadModel, pool: asyncpg.Pool
    ) -> None:
        event = parsed(new_id())
        await model.save_parsed([event])
        client = ArangoClient(hosts=arango_settings.arango_url)
        try:
            again = await asyncio.to_thread(connect_arango, arango_settings, client)
            assert await ArangoPosts(again, PostgresAuthors(pool)).exists(event.payload.post_id)
            for name, wanted in INDEXES.items():
                indexes = again.collection(name).indexes()
                assert isinstance(indexes, list)
                assert {i["name"] for i in wanted} <= {i["name"] for i in indexes}
        finally:
            client.close()

    async def test_a_reset_empties_the_collections_and_keeps_their_indexes(
        self, arango_db: StandardDatabase, model: PostReadModel
    ) -> None:
        event = parsed(new_id())
        await model.save_parsed([event])
        await asyncio.to_thread(reset_collections, arango_db)
        assert not await model.exists(event.payload.post_id)
        assert [p.id for p in await model.save_parsed([event])] == [event.payload.post_id]  # a replay writes again
        for name, wanted in INDEXES.items():
            indexes = arango_db.collection(name).indexes()
            assert isinstance(indexes, list)
            assert {i["name"] for i in wanted} <= {i["name"] for i in indexes}
