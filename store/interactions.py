"""The interactions read model (tables from 050_interactions.sql): likes, reposts, bookmarks, quotes, counters.

Writes come from the interactions consumer, one transaction per batch (a batch of likes, reposts or bookmarks in one
round trip: the function `interactions_apply`, store/migrations/052_interactions_apply.sql):
- a (post, kind, user) row is last-writer-wins by changed_at (at the same instant the active state wins), so
  duplicates and out-of-order events leave the same state;
- counters move by what each upsert changed (a row turning active or inactive), in the same statement, after the
  post's counter row is locked: concurrent batches touching one post run one after the other;
- a deleted post is tombstoned in `post_counters`: its likes, reposts and bookmarks are dropped, its counts zeroed,
  and later events about it change nothing.
Reads: `of_posts` gives the counts, the viewer's flags and the quoted posts of a whole page in one query.
After each batch the consumer announces on `CHANNEL` whose flags, which posts' counts and which kinds moved, so a
process that caches them (gateway/interaction_cache.py) drops them: a viewer reads their own like once applied; and
the live relay (gateway/pages/live.py) reads `counts` again for the open post pages whose post moved.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

import asyncpg
import orjson
import redis.asyncio as aioredis

from schemas.topics import NAMESPACE
from store.posts import PAGE, PostReadModel, PostView, post_view

Kind = Literal["like", "repost", "bookmark"]
KINDS: tuple[Kind, ...] = ("like", "repost", "bookmark")
Parts = tuple[dict[str, Any], tuple[str, ...]]  # (the fields every viewer sees, the viewer's active kinds)
CHANNEL = f"chirp:{NAMESPACE}interactions"  # {"changes": [[user, post, kind], ...]}: what a batch changed


@dataclass(frozen=True, slots=True)
class Change:
    """The state of one (post, kind, user) after an event."""

    post_id: str
    kind: Kind
    user_id: str
    active: bool
    at: datetime


@dataclass(frozen=True, slots=True)
class Quote:
    post_id: str
    quote_of: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Keyset:
    rows: list[dict[str, Any]]
    after: tuple[datetime, str] | None  # (changed_at, id) to continue after, None on the last page


# SQL --------------------------------------------------------------------------------------------------------

# Counter rows first (so they can be locked), in id order: writers of the same posts queue instead of deadlocking.
# (A batch of likes, reposts or bookmarks does the same in `interactions_apply`, 052_interactions_apply.sql.)
_LOCK_COUNTERS = """
INSERT INTO post_counters (post_id) SELECT DISTINCT unnest($1::text[]) ORDER BY 1 ON CONFLICT DO NOTHING
"""
_FOR_UPDATE = "SELECT 1 FROM post_counters WHERE post_id = ANY($1::text[]) ORDER BY post_id FOR UPDATE"

_APPLY = "SELECT interactions_apply($1, $2, $3, $4, $5)"  # one round trip: see 052_interactions_apply.sql

# A quote counts once (its row is inserted once); a quote whose own post is already deleted is not recorded.
_QUOTES = """
WITH added AS (
    INSERT INTO quotes (post_id, quote_of, active, created_at)
    SELECT x.post_id, x.quote_of, true, x.created_at
    FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS x(post_id, quote_of, created_at)
    WHERE NOT EXISTS (SELECT 1 FROM post_counters c WHERE c.post_id = x.post_id AND c.deleted_at IS NOT NULL)
    ON CONFLICT (post_id) DO NOTHING
    RETURNING quote_of
)
UPDATE post_counters c SET quote_count = c.quote_count + a.n
FROM (SELECT quote_of, count(*) AS n FROM added GROUP BY quote_of) a WHERE c.post_id = a.quote_of
"""

_DELETED_QUOTES = """
WITH gone AS (
    UPDATE quotes SET active = false WHERE post_id = ANY($1::text[]) AND active RETURNING quote_of
)
UPDATE post_counters c SET quote_count = c.quote_count - g.n
FROM (SELECT quote_of, count(*) AS n FROM gone GROUP BY quote_of) g WHERE c.post_id = g.quote_of
"""

_TOMBSTONE = """
UPDATE post_counters c SET deleted_at = least(c.deleted_at, x.at), like_count = 0, repost_count = 0, quote_count = 0
FROM unnest($1::text[], $2::timestamptz[]) AS x(post_id, at) WHERE c.post_id = x.post_id
"""

# Counts, the viewer's flags and the quoted post (with its author) of each post of a page, in the page's order.
# The flags are looked up by whole primary keys, one per kind (post, kind, viewer): three index probes per post,
# however many people liked it. A condition on the post and the viewer alone let the planner walk every like of
# the post (by the partial index by post, or the primary key with the kind as a filter). A quoted post is shown as
# deleted once either read model has it so: this one's tombstone is what the consumer announces (the posts table may
# record the deletion a moment later, and a cache must not keep the quote from a read in between).
_OF_POSTS = """
SELECT x.post_id, coalesce(c.like_count, 0) AS like_count, coalesce(c.repost_count, 0) AS repost_count,
       coalesce(c.quote_count, 0) AS quote_count,
       array(SELECT k.kind FROM unnest('{like,repost,bookmark}'::text[]) AS k(kind)
             WHERE (SELECT i.active FROM interactions i
                    WHERE i.post_id = x.post_id AND i.kind = k.kind AND i.user_id = $2)) AS mine,
       q.quote_of, qp.deleted_at IS NULL AND qp.post_id IS NOT NULL AND qc.deleted_at IS NULL AS quote_live,
       qp.html AS quote_html,
       qp.text AS quote_text, qp.created_at AS quote_created_at,
       CASE WHEN u.handle LIKE '~%' THEN '' ELSE coalesce(u.handle, '') END AS quote_handle,
       coalesce(u.display_name, '') AS quote_display_name, coalesce(u.avatar_url, '') AS quote_avatar_url
FROM unnest($1::text[]) AS x(post_id)
LEFT JOIN post_counters c ON c.post_id = x.post_id
LEFT JOIN quotes q ON q.post_id = x.post_id
LEFT JOIN post_counters qc ON qc.post_id = q.quote_of
LEFT JOIN posts qp ON qp.post_id = q.quote_of
LEFT JOIN users u ON u.user_id = qp.author_id
"""

# The same without the quoted posts, for a posts read model on another store (hydrated through its port).
_OF_POSTS_UNQUOTED = """
SELECT x.post_id, coalesce(c.like_count, 0) AS like_count, coalesce(c.repost_count, 0) AS repost_count,
       coalesce(c.quote_count, 0) AS quote_count,
       array(SELECT k.kind FROM unnest('{like,repost,bookmark}'::text[]) AS k(kind)
             WHERE (SELECT i.active FROM interactions i
                    WHERE i.post_id = x.post_id AND i.kind = k.kind AND i.user_id = $2)) AS mine,
       q.quote_of, qc.deleted_at IS NOT NULL AS quote_tombstoned
FROM unnest($1::text[]) AS x(post_id)
LEFT JOIN post_counters c ON c.post_id = x.post_id
LEFT JOIN quotes q ON q.post_id = x.post_id
LEFT JOIN post_counters qc ON qc.post_id = q.quote_of
"""

# A live post (as `PostgresPosts.get` reads it) and its `_OF_POSTS` columns, in one statement: `GET /api/posts/{id}`.
_POST_WITH_PARTS = f"""
WITH shown AS ({PAGE.format(where="p.post_id = $1", order="DESC", limit="1")})
SELECT shown.*, parts.like_count, parts.repost_count, parts.quote_count, parts.mine, parts.quote_of,
       parts.quote_live, parts.quote_html, parts.quote_text, parts.quote_created_at, parts.quote_handle,
       parts.quote_display_name, parts.quote_avatar_url
FROM shown CROSS JOIN LATERAL ({_OF_POSTS.replace("unnest($1::text[]) AS x(post_id)", "(SELECT shown.post_id) x")})
    AS parts
"""

# The counts of live posts (a post never interacted with has no row: its counts are 0).
_COUNTS = """
SELECT post_id, like_count, repost_count, quote_count FROM post_counters
WHERE post_id = ANY($1::text[]) AND deleted_at IS NULL
"""
Counts = dict[str, int]  # {"like_count", "repost_count", "quote_count"}

_POSTS_OF_USER = """
SELECT i.post_id AS id, i.changed_at FROM interactions i
WHERE i.user_id = $1 AND i.kind = $2 AND i.active
  AND ($3::timestamptz IS NULL OR (i.changed_at, i.post_id) < ($3::timestamptz, $4::text))
ORDER BY i.changed_at DESC, i.post_id DESC LIMIT $5
"""

_USERS_OF_POST = """
SELECT i.user_id AS id, i.changed_at, u.handle, u.display_name, u.avatar_url FROM interactions i
JOIN users u ON u.user_id = i.user_id
WHERE i.post_id = $1 AND i.kind = $2 AND i.active AND left(u.handle, 1) <> '~'
  AND ($3::timestamptz IS NULL OR (i.changed_at, i.user_id) < ($3::timestamptz, $4::text))
ORDER BY i.changed_at DESC, i.user_id DESC LIMIT $5
"""

_QUOTES_OF = """
SELECT q.post_id AS id, q.created_at AS changed_at FROM quotes q
WHERE q.quote_of = $1 AND q.active
  AND ($3::timestamptz IS NULL OR (q.created_at, q.post_id) < ($3::timestamptz, $4::text))
  AND $2::text IS NOT NULL
ORDER BY q.created_at DESC, q.post_id DESC LIMIT $5
"""


# The newest active repost of each post among some users (a post reposted by several of them counts at its latest):
# {who} is `ANY($1::text[])` (those users) or the user $1 and whom they follow but do not hide ($4, a home timeline).
_REPOSTS_BY = """
SELECT * FROM (
    SELECT DISTINCT ON (i.post_id) i.post_id, i.changed_at, i.user_id, u.handle, u.display_name, u.avatar_url
    FROM interactions i JOIN users u ON u.user_id = i.user_id
    WHERE i.kind = 'repost' AND i.active AND i.user_id {who}
    ORDER BY i.post_id, i.changed_at DESC, i.user_id DESC
) r
WHERE ($2::timestamptz IS NULL OR r.changed_at < $2::timestamptz)
ORDER BY r.changed_at DESC, r.post_id DESC LIMIT $3
"""


def newest_per_row(changes: Sequence[Change]) -> list[Change]:
    """The newest change of each (post, kind, user) (one upsert may not touch a row twice), in key order."""
    newest: dict[tuple[str, str, str], Change] = {}
    for change in changes:
        key = (change.post_id, change.kind, change.user_id)
        if key not in newest or (change.at, change.active) > (newest[key].at, newest[key].active):
            newest[key] = change
    return [newest[key] for key in sorted(newest)]


def flags_json(mine: Sequence[str]) -> dict[str, bool]:
    """The viewer's `*_by_me` flags from the kinds they have active on a post."""
    return {"liked_by_me": "like" in mine, "reposted_by_me": "repost" in mine, "bookmarked_by_me": "bookmark" in mine}


def quote_columns(quoted: PostView | None) -> dict[str, Any]:
    """The quoted post's columns of `_OF_POSTS`, from its view (None: deleted or unknown)."""
    if quoted is None:
        return {"quote_live": False}
    return {
        "quote_live": True,
        "quote_html": quoted.html,
        "quote_text": quoted.text,
        "quote_created_at": quoted.created_at,
        "quote_handle": quoted.handle,
        "quote_display_name": quoted.display_name,
        "quote_avatar_url": quoted.avatar_url,
    }


def interactions_json(row: Mapping[str, Any], signed_in: bool) -> dict[str, Any]:
    """The fields a post object gains: counts, the viewer's flags, and `quote_of` for a quote."""
    found: dict[str, Any] = {k: row[k] for k in ("like_count", "repost_count", "quote_count")}
    if signed_in:
        found.update(flags_json(row["mine"]))
    if row["quote_of"] is not None:
        if row["quote_live"]:
            author = {k: row[f"quote_{k}"] for k in ("handle", "display_name", "avatar_url")}
            found["quote_of"] = {
                "id": row["quote_of"],
                "author": author,
                "html": row["quote_html"],
                "text": row["quote_text"],
                "created_at": row["quote_created_at"],
            }
        else:
            found["quote_of"] = {"id": row["quote_of"], "deleted": True}
    return found


async def announce(redis: aioredis.Redis, changes: Iterable[tuple[str, str, str]]) -> None:
    """Tell caches which (user, post, kind) a batch (now committed) changed; a quote names the quoting post and the
    quoted one."""
    if triples := sorted(set(changes)):
        await redis.publish(CHANNEL, orjson.dumps({"changes": triples}))


class InteractionsReadModel(Protocol):
    """What the gateway reads about likes, reposts, bookmarks and quotes."""

    async def of_posts(self, post_ids: Sequence[str], viewer_id: str | None) -> dict[str, dict[str, Any]]: ...
    async def counts(self, post_ids: Sequence[str]) -> dict[str, Counts]: ...
    async def parts_of_posts(self, post_ids: Sequence[str], viewer_id: str | None) -> dict[str, Parts]: ...
    async def post_and_parts(self, post_id: str, viewer_id: str | None) -> tuple[PostView, Parts] | None: ...
    async def reposts_by(
        self, users: Sequence[str] | str, before: datetime | None, limit: int, hidden: Sequence[str] = ()
    ) -> list[dict[str, Any]]: ...
    async def posts_of_user(
        self, user_id: str, kind: Kind, after: tuple[datetime, str] | None, limit: int
    ) -> Keyset: ...
    async def users_of_post(
        self, post_id: str, kind: Kind, after: tuple[datetime, str] | None, limit: int
    ) -> Keyset: ...
    async def quotes_of(self, post_id: str, after: tuple[datetime, str] | None, limit: int) -> Keyset: ...
    async def quoted(self, post_id: str) -> str | None: ...


class PostgresInteractions:
    def __init__(self, pool: asyncpg.Pool, posts_elsewhere: PostReadModel | None = None) -> None:
        self._pool = pool
        self._posts = posts_elsewhere  # the posts read model when it is not in this database (CHIRP_STORE)

    async def _of_posts(self, post_ids: Sequence[str], viewer_id: str | None) -> Sequence[Mapping[str, Any]]:
        """`_OF_POSTS`'s rows: the quoted posts joined in SQL, or read through the posts port when elsewhere."""
        if not post_ids:
            return []
        if self._posts is None:
            return await self._pool.fetch(_OF_POSTS, list(post_ids), viewer_id)
        rows = await self._pool.fetch(_OF_POSTS_UNQUOTED, list(post_ids), viewer_id)
        wanted = sorted({r["quote_of"] for r in rows if r["quote_of"] is not None})
        quoted = {p.id: p for p in await self._posts.many(wanted)} if wanted else {}
        return [{**r, **quote_columns(None if r["quote_tombstoned"] else quoted.get(r["quote_of"]))} for r in rows]

    async def _locked(self, conn: asyncpg.Connection, post_ids: Sequence[str]) -> None:
        ids = sorted(set(post_ids))
        await conn.execute(_LOCK_COUNTERS, ids)
        await conn.execute(_FOR_UPDATE, ids)

    async def apply(self, changes: Sequence[Change]) -> None:
        """Upsert the newest state of each (post, kind, user) and move the counters by what changed."""
        newest = newest_per_row(changes)
        if not newest:
            return
        columns = [[c.post_id for c in newest], [c.kind for c in newest], [c.user_id for c in newest]]
        await self._pool.execute(_APPLY, *columns, [c.active for c in newest], [c.at for c in newest])

    async def add_quotes(self, quotes: Sequence[Quote]) -> None:
        """Record quoting posts (each once) and count them on the posts they quote."""
        if not quotes:
            return
        async with self._pool.acquire() as conn, conn.transaction():
            await self._locked(conn, [q.post_id for q in quotes] + [q.quote_of for q in quotes])
            args = [[q.post_id for q in quotes], [q.quote_of for q in quotes], [q.created_at for q in quotes]]
            await conn.execute(_QUOTES, *args)

    async def delete_posts(self, deleted: dict[str, datetime]) -> set[str]:
        """Tombstone deleted posts (id -> when): drop their likes, reposts and bookmarks, uncount their quotes.
        Returns the other posts whose parts this changed: those they quoted (a count) and those quoting them."""
        if not deleted:
            return set()
        post_ids = sorted(deleted)
        async with self._pool.acquire() as conn, conn.transaction():
            quoted = await conn.fetch("SELECT quote_of FROM quotes WHERE post_id = ANY($1::text[])", post_ids)
            quoting = await conn.fetch("SELECT post_id FROM quotes WHERE quote_of = ANY($1::text[])", post_ids)
            await self._locked(conn, [*post_ids, *(r["quote_of"] for r in quoted)])
            await conn.execute(_DELETED_QUOTES, post_ids)
            await conn.execute(_TOMBSTONE, post_ids, [deleted[p] for p in post_ids])
            await conn.execute("DELETE FROM interactions WHERE post_id = ANY($1::text[])", post_ids)
        return {r["quote_of"] for r in quoted} | {r["post_id"] for r in quoting}

    async def quoted(self, post_id: str) -> str | None:
        """The post this one quotes, None when it quotes none."""
        return await self._pool.fetchval("SELECT quote_of FROM quotes WHERE post_id = $1", post_id)

    async def of_posts(self, post_ids: Sequence[str], viewer_id: str | None) -> dict[str, dict[str, Any]]:
        """post id -> the fields its post object gains, for a whole page in one query."""
        rows = await self._of_posts(post_ids, viewer_id)
        return {r["post_id"]: interactions_json(r, viewer_id is not None) for r in rows}

    async def counts(self, post_ids: Sequence[str]) -> dict[str, Counts]:
        """post id -> its like, repost and quote counts, for the posts that have any and are not deleted."""
        rows = await self._pool.fetch(_COUNTS, list(post_ids)) if post_ids else []
        return {r["post_id"]: {k: r[k] for k in ("like_count", "repost_count", "quote_count")} for r in rows}

    async def parts_of_posts(self, post_ids: Sequence[str], viewer_id: str | None) -> dict[str, Parts]:
        """post id -> what every viewer sees (counts, `quote_of`) and the kinds the viewer has active on it, in one
        query: a cache keeps the two apart."""
        rows = await self._of_posts(post_ids, viewer_id)
        return {r["post_id"]: (interactions_json(r, False), tuple(r["mine"])) for r in rows}

    async def post_and_parts(self, post_id: str, viewer_id: str | None) -> tuple[PostView, Parts] | None:
        """The live post with this id (None when unknown or deleted) and its parts (as `parts_of_posts`): one query
        when the posts are in this database, else the posts port's and this one's at once."""
        if self._posts is not None:
            post, parts = await asyncio.gather(self._posts.get(post_id), self.parts_of_posts([post_id], viewer_id))
            return (post, parts[post_id]) if post is not None else None
        row = await self._pool.fetchrow(_POST_WITH_PARTS, post_id, viewer_id)
        return (post_view(row), (interactions_json(row, False), tuple(row["mine"]))) if row is not None else None

    async def _keyset(
        self, sql: str, key: str | None, other: str, after: tuple[datetime, str] | None, limit: int
    ) -> Keyset:
        at, last = after or (None, None)
        rows = [dict(r) for r in await self._pool.fetch(sql, key, other, at, last, limit + 1)]
        more = len(rows) > limit
        rows = rows[:limit]
        return Keyset(rows, (rows[-1]["changed_at"], rows[-1]["id"]) if more else None)

    async def reposts_by(
        self, users: Sequence[str] | str, before: datetime | None, limit: int, hidden: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        """The posts `users` reposted (a list of ids, or one id: that user and whom they follow), each once at its
        latest repost before `before` by one of them not `hidden` (so a hidden reposter leaves an earlier one's
        repost shown), newest first (rows: post_id, changed_at, the reposter's user_id, handle, display_name,
        avatar_url). The hidden ids are matched against the followees, not against every repost row."""
        if isinstance(users, str):
            who = (
                "IN (SELECT $1::text UNION ALL SELECT followee_id FROM follows"
                " WHERE follower_id = $1 AND active AND followee_id NOT IN (SELECT unnest($4::text[])))"
            )
            args: list[Any] = [users, before, limit, list(hidden)]
        else:
            unseen = set(hidden)
            who, args = "= ANY($1::text[])", [[u for u in users if u not in unseen], before, limit]
        return [dict(r) for r in await self._pool.fetch(_REPOSTS_BY.format(who=who), *args)]

    async def posts_of_user(self, user_id: str, kind: Kind, after: tuple[datetime, str] | None, limit: int) -> Keyset:
        """The posts a user liked / reposted / bookmarked, newest first (rows: id, changed_at)."""
        return await self._keyset(_POSTS_OF_USER, user_id, kind, after, limit)

    async def users_of_post(self, post_id: str, kind: Kind, after: tuple[datetime, str] | None, limit: int) -> Keyset:
        """Who liked / reposted a post, newest first (rows: id, changed_at, handle, display_name, avatar_url)."""
        return await self._keyset(_USERS_OF_POST, post_id, kind, after, limit)

    async def quotes_of(self, post_id: str, after: tuple[datetime, str] | None, limit: int) -> Keyset:
        """The live posts quoting a post, newest first (rows: id, changed_at)."""
        return await self._keyset(_QUOTES_OF, post_id, "quote", after, limit)
