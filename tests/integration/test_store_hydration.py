"""SQL read models that show posts hydrate them through the posts port when the posts live on another store
(`CHIRP_STORE=arango`). Here the "other store" is PostgreSQL's own adapter behind the port, so the two paths must
answer the same."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg

from schemas.events import new_id
from store.interactions import PostgresInteractions, Quote
from store.posts import PostgresPosts
from store.users import PostgresUsersReadModel
from tests.integration.test_posts_store import deleted, parsed


async def a_user(pg: asyncpg.Pool, prefix: str, name: str = "", avatar: str = "") -> tuple[str, str]:
    """A new user row: (id, handle)."""
    user, handle = new_id(), f"{prefix}{new_id()[-10:].lower()}"
    await pg.execute(
        "INSERT INTO users (user_id, handle, display_name, avatar_url, joined_at, profile_at)"
        " VALUES ($1, $2, $3, $4, now(), now())",
        user, handle, name, avatar,
    )  # fmt: skip
    return user, handle


async def test_quoted_posts_come_through_the_port_as_from_the_join(pg: asyncpg.Pool) -> None:
    posts = PostgresPosts(pg)
    author, handle = await a_user(pg, "q", "Quoted", "https://a/q.png")
    quoted, gone = parsed(author, html="<p>quoted</p>"), parsed(author)
    quoting, quoting_gone, plain = parsed(new_id()), parsed(new_id()), parsed(new_id())
    await posts.save_parsed([quoted, gone, quoting, quoting_gone, plain])
    await posts.save_deleted([deleted(gone.payload.post_id, author)])
    now = datetime.now(UTC)
    joined = PostgresInteractions(pg)
    await joined.add_quotes([Quote(quoting.payload.post_id, quoted.payload.post_id, now),
                             Quote(quoting_gone.payload.post_id, gone.payload.post_id, now)])  # fmt: skip
    ids = [quoting.payload.post_id, quoting_gone.payload.post_id, plain.payload.post_id]
    hydrated = PostgresInteractions(pg, posts_elsewhere=posts)
    for viewer in (None, new_id()):
        expected = await joined.of_posts(ids, viewer)
        assert expected[quoting.payload.post_id]["quote_of"]["author"]["handle"] == handle
        assert expected[quoting_gone.payload.post_id]["quote_of"] == {"id": gone.payload.post_id, "deleted": True}
        assert await hydrated.of_posts(ids, viewer) == expected
        assert await hydrated.parts_of_posts(ids, viewer) == await joined.parts_of_posts(ids, viewer)


async def test_a_profiles_post_count_comes_through_the_port_as_from_the_join(pg: asyncpg.Pool) -> None:
    posts = PostgresPosts(pg)
    user, handle = await a_user(pg, "c")
    written = [parsed(user) for _ in range(3)]
    await posts.save_parsed(written)
    await posts.save_deleted([deleted(written[0].payload.post_id, user)])
    joined = await PostgresUsersReadModel(pg).profile(handle, None)
    hydrated = await PostgresUsersReadModel(pg, posts_elsewhere=posts).profile(handle, None)
    assert joined is not None and joined["posts_count"] == 2
    assert hydrated == joined
