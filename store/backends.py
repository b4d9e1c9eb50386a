"""Where the read models live: `CHIRP_STORE` (`postgres` or `arango`) picks the adapter of every port the ArangoDB
adapter covers, today the posts read model (`PostReadModel`: the `posts` and `post_versions` tables or
collections). Everything else stays in PostgreSQL and Redis on either store. The composition roots
(gateway/app.py `create_app`, the consumers' `Context`) and the replay (ops/replay.py) ask here; nothing else
chooses."""

from __future__ import annotations

import asyncpg

from chirp.settings import Settings
from store.interactions import PostgresInteractions
from store.posts import PostgresAuthors, PostgresPosts, PostReadModel
from store.users import PostgresUsersReadModel

ARANGO_TABLES = ("posts", "post_versions")  # the read-model tables that live in ArangoDB under CHIRP_STORE=arango


def posts_read_model(settings: Settings, pg: asyncpg.Pool) -> PostReadModel:
    """The posts read model on the configured store (ArangoDB connects on its first query)."""
    if settings.store == "arango":
        from store.arango import ArangoPosts

        return ArangoPosts.from_settings(settings, PostgresAuthors(pg))
    return PostgresPosts(pg)


def elsewhere(settings: Settings, posts: PostReadModel) -> PostReadModel | None:
    """`posts` when it is not in PostgreSQL: then the SQL read models that show posts hydrate them through it."""
    return posts if settings.store != "postgres" else None


def interactions_read_model(settings: Settings, pg: asyncpg.Pool, posts: PostReadModel) -> PostgresInteractions:
    """The interactions read model (PostgreSQL on either store); quoted posts come from `posts` when elsewhere."""
    return PostgresInteractions(pg, elsewhere(settings, posts))


def users_read_model(settings: Settings, pg: asyncpg.Pool, posts: PostReadModel) -> PostgresUsersReadModel:
    """The users read model (PostgreSQL on either store); a profile's post count comes from `posts` when the posts
    live elsewhere (the PostgreSQL adapter counts them in the profile's own query)."""
    return PostgresUsersReadModel(pg, elsewhere(settings, posts))


def arango_tables(settings: Settings, tables: tuple[str, ...]) -> tuple[str, ...]:
    """Which of these read-model tables live in ArangoDB (as collections of the same names) on this store."""
    return tuple(t for t in tables if t in ARANGO_TABLES) if settings.store == "arango" else ()
