"""The posts read model: the `PostReadModel` port and its PostgreSQL adapter, `PostgresPosts`.

Writes come from the posts consumer, one statement per batch; reads serve the gateway's post endpoints.
- Rows are keyed by post id and written with `INSERT ... ON CONFLICT`, so a replayed batch changes nothing.
- A delete leaves a tombstone (deleted_at set, content cleared; `moderated` when the operators took it down); a
  post-parsed for a tombstoned id changes nothing, whichever came first. A newer post-parsed replaces the content, an
  older one does not: newer by the version it renders (`edited_at`, an edit), then by its own time (a re-render of
  the same version).
- `post_versions` keeps every version (body, html, time) of a live post for `GET /api/posts/{id}/history`.
- Lists are keyset pages on the post id (a ULID, so id order is creation order): `after` is the last id served.
- `reply_count` is counted at read time from the live replies (index `posts_replies`): no counter to drift
  when replies and deletes arrive out of order or twice; a page costs one index probe per post.
- Author names come from the `users` table with a LEFT JOIN: a post whose author is not projected yet (no row,
  or the users consumer's stub row with a `~` placeholder handle) still shows, with empty names.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import asyncpg

from schemas.events import PostDeleted, PostParsed
from schemas.topics import NAMESPACE


@dataclass(frozen=True, slots=True)
class PostView:
    """A live post as the API shows it."""

    id: str
    author_id: str
    handle: str
    display_name: str
    avatar_url: str
    body: str
    html: str
    text: str
    hashtags: list[str]
    mentions: list[str]
    reply_to: str | None
    reply_count: int
    created_at: datetime
    reply_to_handle: str = ""  # the handle of the replied-to post's author ("Replying to @handle")
    edited_at: datetime | None = None  # the time of the version shown, when it is an edit


@dataclass(frozen=True, slots=True)
class Tombstone:
    """A deleted post in a conversation: where it was, not what it said."""

    id: str
    reply_to: str | None
    created_at: datetime


Shown = PostView | Tombstone  # a post as a conversation shows it
Reply = tuple[Shown, int]  # a reply and its `later`: 0 by the conversation's original author (first), else 1


@dataclass(frozen=True, slots=True)
class Version:
    """One version of a post: its Markdown, its rendering, and when it was written."""

    body: str
    html: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Page:
    items: list[PostView]
    last: str | None  # the id to continue after, None on the last page


@dataclass(frozen=True, slots=True)
class Projected:
    """A post that a write made visible (new, not a replay), for the live-update notice."""

    id: str
    author_id: str
    reply_to: str | None
    hashtags: list[str]


@dataclass(frozen=True, slots=True)
class Author:
    """How a post's author shows: empty names when the author is not projected yet (or has a placeholder handle)."""

    handle: str
    display_name: str
    avatar_url: str


NO_AUTHOR = Author("", "", "")


class Authors(Protocol):
    """Author names for a store that does not hold the users read model (ArangoDB's posts: store/arango.py)."""

    async def of(self, user_ids: Collection[str]) -> dict[str, Author]: ...
    async def user_id_of(self, handle: str) -> str | None: ...


class PostReadModel(Protocol):
    async def get(self, post_id: str) -> PostView | None: ...
    async def exists(self, post_id: str) -> bool: ...
    async def author_of(self, post_id: str) -> str | None: ...
    async def many(self, post_ids: Sequence[str]) -> list[PostView]: ...
    async def latest(self, after: str | None, limit: int, *, hidden: Sequence[str] = ()) -> Page: ...
    async def by_author(self, author_id: str, after: str | None, limit: int, *, hidden: Sequence[str] = ()) -> Page: ...
    async def by_tag(self, tag: str, after: str | None, limit: int, *, hidden: Sequence[str] = ()) -> Page: ...
    async def replies(self, post_id: str, after: str | None, limit: int, *, hidden: Sequence[str] = ()) -> Page: ...
    async def user_id_of(self, handle: str) -> str | None: ...
    async def save_parsed(self, events: Sequence[PostParsed]) -> list[Projected]: ...
    async def save_deleted(self, events: Sequence[PostDeleted]) -> list[str]: ...
    async def taken_down(self, post_id: str) -> str | None: ...
    async def history(self, post_id: str) -> list[Version]: ...
    # For read paths that keep post ids of their own (timelines, notifications, profiles, erasure, exports) and
    # hydrate or count them here rather than joining the posts table.
    async def states(self, post_ids: Sequence[str]) -> dict[str, bool]: ...
    async def authors_of(self, post_ids: Sequence[str]) -> dict[str, str]: ...
    async def ids_by_author(self, author_id: str) -> list[str]: ...
    async def count_by_author(self, author_id: str) -> int: ...
    async def recent_ids(self, authors: Sequence[str], per_author: int) -> dict[str, list[str]]: ...
    async def newest_ids(self, authors: Sequence[str], since: str, total: int) -> list[tuple[str, str]]: ...
    async def timeline_items(
        self, post_ids: Sequence[str], authors: Sequence[str], before: str | None, limit: int
    ) -> list[PostView]: ...
    # Conversations (store/threads.py): deleted posts show as tombstones where the chain needs them.
    async def ancestors(self, post_id: str, max_depth: int) -> list[Shown]: ...
    async def children(
        self, parent_ids: Sequence[str], op: str, per_parent: int, hidden: Sequence[str]
    ) -> list[Reply]: ...
    async def more_children(
        self, post_id: str, op: str, after: tuple[int, str], limit: int, hidden: Sequence[str]
    ) -> list[Reply]: ...


# Redis pub/sub: the posts consumer announces what it made visible and what it removed --------------------------

CHANNEL = f"chirp:{NAMESPACE}posts"  # {"id", "author_id", "reply_to", "hashtags"} per newly visible post (live updates)
DELETED_CHANNEL = f"chirp:{NAMESPACE}posts:deleted"  # {"id"} per post a delete removed
EDITED_CHANNEL = f"chirp:{NAMESPACE}posts:edited"  # {"id"} per post an edit's render was written for


# SQL --------------------------------------------------------------------------------------------------------

# The replied-to post's author, by handle (a deleted parent keeps its author in the tombstone).
REPLY_TO_HANDLE = """(SELECT CASE WHEN pu.handle LIKE '~%' THEN '' ELSE pu.handle END
        FROM posts pp JOIN users pu ON pu.user_id = pp.author_id WHERE pp.post_id = p.reply_to) AS reply_to_handle"""

# {where} filters live posts before the LIMIT; names and reply counts are looked up for that page only.
PAGE = f"""
WITH page AS (
    SELECT * FROM posts p WHERE p.deleted_at IS NULL AND {{where}} ORDER BY p.post_id {{order}} LIMIT {{limit}}
)
SELECT p.post_id, p.author_id, CASE WHEN u.handle LIKE '~%' THEN '' ELSE coalesce(u.handle, '') END AS handle,
       coalesce(u.display_name, '') AS display_name, coalesce(u.avatar_url, '') AS avatar_url,
       p.body, p.html, p.text, p.hashtags, p.mentions, p.reply_to, p.created_at, p.edited_at,
       (SELECT count(*) FROM posts r WHERE r.reply_to = p.post_id AND r.deleted_at IS NULL) AS reply_count,
       {REPLY_TO_HANDLE}
FROM page p LEFT JOIN users u ON u.user_id = p.author_id
ORDER BY p.post_id {{order}}
"""

# A batch of parsed posts goes to PostgreSQL as one array per column (binary, no JSON to parse per row). Arrays of
# arrays must be rectangular, so each post's hashtags, mentions and links travel as an array literal, cast per row.
PARSED_ROWS = """unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
              $9::text[], $10::timestamptz[], $11::timestamptz[], $12::timestamptz[])
    AS x(post_id, author_id, body, html, text, hashtags, mentions, links, reply_to, created_at, parsed_at, edited_at)"""


def newer_version(row: str) -> str:
    """SQL: the upserted render (EXCLUDED) is of a newer version than `row`'s, or a newer render of the same one."""
    return (
        f"({row}.parsed_at IS NULL OR (coalesce({row}.edited_at, '-infinity'), {row}.parsed_at)"
        " < (coalesce(EXCLUDED.edited_at, '-infinity'), EXCLUDED.parsed_at))"
    )


# One statement (one round trip, its own transaction): upsert the newest render of each post, and keep every version
# of the batch (a re-render of one replaces its html) unless the post is deleted. The versions' check reads the rows
# as they were before the statement, which is what it needs: the upsert never changes `deleted_at`.
_SAVE_PARSED = f"""
WITH written AS (
    INSERT INTO posts AS p (post_id, author_id, body, html, text, hashtags, mentions, links, reply_to, created_at,
                            parsed_at, edited_at)
    SELECT post_id, author_id, body, html, text, hashtags::text[], mentions::text[], links::text[], reply_to,
           created_at, parsed_at, edited_at
    FROM {PARSED_ROWS}
    ON CONFLICT (post_id) DO UPDATE SET
        body = EXCLUDED.body, html = EXCLUDED.html, text = EXCLUDED.text, hashtags = EXCLUDED.hashtags,
        mentions = EXCLUDED.mentions, links = EXCLUDED.links, parsed_at = EXCLUDED.parsed_at,
        edited_at = EXCLUDED.edited_at
    WHERE p.deleted_at IS NULL AND {newer_version("p")}
    RETURNING post_id, author_id, reply_to, hashtags, xmax = 0 AS inserted
), versions AS (
    INSERT INTO post_versions AS v (post_id, at, body, html)
    SELECT x.post_id, x.at, x.body, x.html
    FROM unnest($13::text[], $14::timestamptz[], $15::text[], $16::text[]) AS x(post_id, at, body, html)
    WHERE NOT EXISTS (SELECT 1 FROM posts d WHERE d.post_id = x.post_id AND d.deleted_at IS NOT NULL)
    ON CONFLICT (post_id, at) DO UPDATE SET body = EXCLUDED.body, html = EXCLUDED.html
)
SELECT * FROM written
"""

_HISTORY = """
SELECT v.body, v.html, v.at FROM post_versions v JOIN posts p USING (post_id)
WHERE v.post_id = $1 AND p.deleted_at IS NULL ORDER BY v.at DESC
"""

# A delete for an unknown id inserts the tombstone; one for a live post by the same author clears it and drops its
# versions (one statement, one round trip).
_SAVE_DELETED = """
WITH removed AS (
    INSERT INTO posts AS p (post_id, author_id, created_at, deleted_at, moderated)
    SELECT x.post_id, x.author_id, x.at, x.at, x.moderated
    FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::bool[]) AS x(post_id, author_id, at, moderated)
    ON CONFLICT (post_id) DO UPDATE SET
        deleted_at = EXCLUDED.deleted_at, body = '', html = '', text = '', hashtags = '{}', mentions = '{}',
        links = '{}', moderated = EXCLUDED.moderated
    WHERE p.deleted_at IS NULL AND p.author_id = EXCLUDED.author_id
    RETURNING post_id
), versions AS (
    DELETE FROM post_versions v USING removed r WHERE v.post_id = r.post_id
)
SELECT post_id FROM removed
"""


# The ids drive primary-key lookups (`= ANY`), whatever the statistics say; big authors' newest posts before the
# cursor join them in the same array (an init plan run once).
_TIMELINE_ITEMS = f"""
SELECT p.post_id, p.author_id, CASE WHEN u.handle LIKE '~%' THEN '' ELSE coalesce(u.handle, '') END AS handle,
       coalesce(u.display_name, '') AS display_name, coalesce(u.avatar_url, '') AS avatar_url,
       p.body, p.html, p.text, p.hashtags, p.mentions, p.reply_to, p.created_at,
       (SELECT count(*) FROM posts r WHERE r.reply_to = p.post_id AND r.deleted_at IS NULL) AS reply_count,
       {REPLY_TO_HANDLE}
FROM posts p LEFT JOIN users u ON u.user_id = p.author_id
WHERE p.deleted_at IS NULL AND p.post_id = ANY($1::text[] || ARRAY(
    SELECT b.post_id FROM unnest($2::text[]) AS a(author_id), LATERAL (
        SELECT post_id FROM posts
        WHERE posts.author_id = a.author_id AND deleted_at IS NULL AND ($3::text IS NULL OR post_id < $3)
        ORDER BY post_id DESC LIMIT $4) b))
ORDER BY p.post_id DESC
LIMIT $4"""

_RECENT_IDS = """
SELECT a.author_id, ARRAY(
    SELECT post_id FROM posts WHERE posts.author_id = a.author_id AND deleted_at IS NULL
    ORDER BY post_id DESC LIMIT $2) AS post_ids
FROM unnest($1::text[]) AS a(author_id)"""

# Index range scans on posts_by_author, one per author, bounded by `since` (ids are ULIDs, so a time).
_NEWEST_IDS = """
SELECT post_id, author_id FROM posts
WHERE author_id = ANY($1::text[]) AND deleted_at IS NULL AND post_id > $2
ORDER BY post_id DESC
LIMIT $3"""


# Conversations: the columns of a post or tombstone, the ancestors in one recursive query, and replies per level.
_THREAD_COLUMNS = f"""p.post_id, p.author_id, p.reply_to, p.created_at, p.deleted_at IS NOT NULL AS deleted,
       CASE WHEN u.handle LIKE '~%' THEN '' ELSE coalesce(u.handle, '') END AS handle,
       coalesce(u.display_name, '') AS display_name, coalesce(u.avatar_url, '') AS avatar_url,
       p.body, p.html, p.text, p.hashtags, p.mentions,
       (SELECT count(*) FROM posts r WHERE r.reply_to = p.post_id AND r.deleted_at IS NULL) AS reply_count,
       {REPLY_TO_HANDLE}"""

_ANCESTORS = f"""
WITH RECURSIVE up(post_id, reply_to, depth) AS (
    SELECT post_id, reply_to, 0 FROM posts WHERE post_id = $1
    UNION ALL
    SELECT p.post_id, p.reply_to, up.depth + 1 FROM posts p JOIN up ON p.post_id = up.reply_to WHERE up.depth < $2
)
SELECT {_THREAD_COLUMNS} FROM up JOIN posts p USING (post_id) LEFT JOIN users u ON u.user_id = p.author_id
WHERE up.depth > 0 ORDER BY up.depth DESC
"""

# Replies shown: live ones, and deleted ones that live replies hang below (so the chain stays whole).
_SHOWN = """(p.deleted_at IS NULL
    OR EXISTS (SELECT 1 FROM posts c WHERE c.reply_to = p.post_id AND c.deleted_at IS NULL))"""

_CHILDREN = f"""
WITH kids AS (
    SELECT p.*, (p.author_id <> $2)::int AS later,
           row_number() OVER (PARTITION BY p.reply_to ORDER BY (p.author_id <> $2), p.post_id) AS n
    FROM posts p WHERE p.reply_to = ANY($1::text[]) AND {_SHOWN} AND p.author_id NOT IN (SELECT unnest($4::text[]))
)
SELECT {_THREAD_COLUMNS}, p.later FROM kids p LEFT JOIN users u ON u.user_id = p.author_id
WHERE p.n <= $3 ORDER BY p.reply_to, p.n
"""

_MORE_CHILDREN = f"""
WITH kids AS (
    SELECT p.*, (p.author_id <> $2)::int AS later FROM posts p
    WHERE p.reply_to = $1 AND {_SHOWN} AND ((p.author_id <> $2)::int, p.post_id) > ($3::int, $4::text)
      AND p.author_id NOT IN (SELECT unnest($6::text[]))
    ORDER BY (p.author_id <> $2), p.post_id LIMIT $5
)
SELECT {_THREAD_COLUMNS}, p.later FROM kids p LEFT JOIN users u ON u.user_id = p.author_id ORDER BY p.later, p.post_id
"""


def shown(row: Mapping[str, Any]) -> Shown:
    """A conversation's row (with `deleted`) as a post, or as a tombstone when deleted."""
    if row["deleted"]:
        return Tombstone(row["post_id"], row["reply_to"], row["created_at"])
    return post_view(row)


def post_view(row: Mapping[str, Any]) -> PostView:
    """A post row (joined with its author and reply count) as the view every post list serves."""
    return PostView(
        id=row["post_id"],
        author_id=row["author_id"],
        handle=row["handle"],
        display_name=row["display_name"],
        avatar_url=row["avatar_url"],
        body=row["body"],
        html=row["html"],
        text=row["text"],
        hashtags=row["hashtags"],
        mentions=row["mentions"],
        reply_to=row["reply_to"],
        reply_count=row["reply_count"],
        created_at=row["created_at"],
        reply_to_handle=row.get("reply_to_handle") or "",
        edited_at=row.get("edited_at"),
    )


def array_literal(values: Sequence[str]) -> str:
    """A text[] literal: every element double-quoted, with backslashes and quotes escaped."""
    if not values:
        return "{}"
    return "{" + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"


def parsed_columns(events: Sequence[PostParsed]) -> list[list[Any]]:
    """The arguments of `PARSED_ROWS` for these events (read models select the columns they keep)."""
    data = [e.payload for e in events]
    return [
        [d.post_id for d in data],
        [d.author_id for d in data],
        [d.body for d in data],
        [d.html for d in data],
        [d.text for d in data],
        [array_literal(d.hashtags) for d in data],
        [array_literal(d.mentions) for d in data],
        [array_literal(d.links) for d in data],
        [d.reply_to for d in data],
        [d.created_at for d in data],
        [e.occurred_at for e in events],
        [d.edited_at for d in data],
    ]


def version_order(event: PostParsed) -> tuple[float, float]:
    """How renders of one post rank: by the version's time (an edit's; the first version lowest), then their own."""
    edited = event.payload.edited_at
    return (edited.timestamp() if edited else float("-inf"), event.occurred_at.timestamp())


def newest_per_post(events: Sequence[PostParsed]) -> list[PostParsed]:
    """One event per post id, the newest version (one statement may not touch a row twice)."""
    newest: dict[str, PostParsed] = {}
    for event in events:
        seen = newest.get(event.payload.post_id)
        if seen is None or version_order(seen) < version_order(event):
            newest[event.payload.post_id] = event
    return list(newest.values())


class PostgresPosts:
    """`PostReadModel` on PostgreSQL (tables from 001_core.sql and 010_posts.sql)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def _page(
        self, where: str, args: Sequence[Any], after: str | None, limit: int, *, desc: bool, hidden: Sequence[str] = ()
    ) -> Page:
        order, cmp = ("DESC", "<") if desc else ("ASC", ">")
        if hidden:  # authors the viewer does not see (store/relations.py), left out by the same query: a hashed
            # subplan, since a long array spelled in the condition costs its planning milliseconds
            args = [*args, list(hidden)]
            where = f"{where} AND p.author_id NOT IN (SELECT unnest(${len(args)}::text[]))"
        if after is not None:  # a separate statement: `$n IS NULL OR id < $n` would not bound the index scan
            args = [*args, after]
            where = f"{where} AND p.post_id {cmp} ${len(args)}"
        sql = PAGE.format(where=where, order=order, limit=f"${len(args) + 1}")
        rows = await self._pool.fetch(sql, *args, limit + 1)
        items = [post_view(r) for r in rows[:limit]]
        return Page(items, items[-1].id if len(rows) > limit else None)

    async def get(self, post_id: str) -> PostView | None:
        """The live post with this id, None when unknown or deleted."""
        page = await self._page("p.post_id = $1", [post_id], None, 1, desc=True)
        return page.items[0] if page.items else None

    async def exists(self, post_id: str) -> bool:
        """Whether a live post has this id."""
        sql = "SELECT EXISTS (SELECT 1 FROM posts WHERE post_id = $1 AND deleted_at IS NULL)"
        return bool(await self._pool.fetchval(sql, post_id))

    async def author_of(self, post_id: str) -> str | None:
        """The author of the live post with this id, None when unknown or deleted."""
        sql = "SELECT author_id FROM posts WHERE post_id = $1 AND deleted_at IS NULL"
        return await self._pool.fetchval(sql, post_id)

    async def many(self, post_ids: Sequence[str]) -> list[PostView]:
        """The live posts among these ids (any order), in one query."""
        return (await self._page("p.post_id = ANY($1::text[])", [list(post_ids)], None, len(post_ids), desc=True)).items

    async def latest(self, after: str | None, limit: int, *, hidden: Sequence[str] = ()) -> Page:
        """Everyone's posts, newest first."""
        return await self._page("TRUE", [], after, limit, desc=True, hidden=hidden)

    async def by_author(self, author_id: str, after: str | None, limit: int, *, hidden: Sequence[str] = ()) -> Page:
        """One author's posts, newest first."""
        return await self._page("p.author_id = $1", [author_id], after, limit, desc=True, hidden=hidden)

    async def by_tag(self, tag: str, after: str | None, limit: int, *, hidden: Sequence[str] = ()) -> Page:
        """Posts carrying the hashtag key `tag` (case-folded, NFC), newest first."""
        return await self._page("p.hashtags @> ARRAY[$1::text]", [tag], after, limit, desc=True, hidden=hidden)

    async def replies(self, post_id: str, after: str | None, limit: int, *, hidden: Sequence[str] = ()) -> Page:
        """Live replies to a post, oldest first (conversation order)."""
        return await self._page("p.reply_to = $1", [post_id], after, limit, desc=False, hidden=hidden)

    async def user_id_of(self, handle: str) -> str | None:
        """The id of the user with this handle (case-insensitive), None when no such user is projected."""
        return await self._pool.fetchval("SELECT user_id FROM users WHERE lower(handle) = lower($1)", handle)

    async def save_parsed(self, events: Sequence[PostParsed]) -> list[Projected]:
        """Upsert parsed posts in one statement; returns the posts this write made visible for the first time."""
        versions = {(e.payload.post_id, e.payload.edited_at or e.payload.created_at): e.payload for e in events}
        written = await self._pool.fetch(
            _SAVE_PARSED,
            *parsed_columns(newest_per_post(events)),
            [post_id for post_id, _ in versions],
            [at for _, at in versions],
            [d.body for d in versions.values()],
            [d.html for d in versions.values()],
        )
        return [Projected(r["post_id"], r["author_id"], r["reply_to"], r["hashtags"]) for r in written if r["inserted"]]

    async def save_deleted(self, events: Sequence[PostDeleted]) -> list[str]:
        """Tombstone posts and drop their versions in one statement; returns the ids it removed or tombstoned first."""
        first: dict[str, PostDeleted] = {}
        for event in sorted(events, key=lambda e: e.occurred_at):
            first.setdefault(event.payload.post_id, event)
        ids = list(first)
        authors = [e.payload.author_id for e in first.values()]
        times = [e.occurred_at for e in first.values()]
        moderated = [e.payload.moderated for e in first.values()]
        return [r["post_id"] for r in await self._pool.fetch(_SAVE_DELETED, ids, authors, times, moderated)]

    async def taken_down(self, post_id: str) -> str | None:
        """The author of this post when the operators took it down, else None."""
        sql = "SELECT author_id FROM posts WHERE post_id = $1 AND deleted_at IS NOT NULL AND moderated"
        return await self._pool.fetchval(sql, post_id)

    async def history(self, post_id: str) -> list[Version]:
        """Every version of a live post, newest first (empty when unknown or deleted)."""
        return [Version(r["body"], r["html"], r["at"]) for r in await self._pool.fetch(_HISTORY, post_id)]

    async def states(self, post_ids: Sequence[str]) -> dict[str, bool]:
        """The posts among these that the model holds, live or tombstoned: post id -> whether it is deleted."""
        sql = "SELECT post_id, deleted_at IS NOT NULL AS deleted FROM posts WHERE post_id = ANY($1::text[])"
        return {r["post_id"]: r["deleted"] for r in await self._pool.fetch(sql, list(post_ids))}

    async def authors_of(self, post_ids: Sequence[str]) -> dict[str, str]:
        """The authors of the live posts among these ids."""
        sql = "SELECT post_id, author_id FROM posts WHERE post_id = ANY($1::text[]) AND deleted_at IS NULL"
        return {r["post_id"]: r["author_id"] for r in await self._pool.fetch(sql, list(post_ids))}

    async def ids_by_author(self, author_id: str) -> list[str]:
        """Every live post id of an author, oldest first."""
        sql = "SELECT post_id FROM posts WHERE author_id = $1 AND deleted_at IS NULL ORDER BY post_id"
        return [r["post_id"] for r in await self._pool.fetch(sql, author_id)]

    async def count_by_author(self, author_id: str) -> int:
        """How many live posts an author has."""
        sql = "SELECT count(*) FROM posts WHERE author_id = $1 AND deleted_at IS NULL"
        return int(await self._pool.fetchval(sql, author_id))

    async def recent_ids(self, authors: Sequence[str], per_author: int) -> dict[str, list[str]]:
        """Each author's newest `per_author` live post ids, newest first (one array per author: no row per post)."""
        return {r["author_id"]: r["post_ids"] for r in await self._pool.fetch(_RECENT_IDS, list(authors), per_author)}

    async def newest_ids(self, authors: Sequence[str], since: str, total: int) -> list[tuple[str, str]]:
        """(post_id, author_id) of the newest `total` live posts of these authors together with ids above `since`
        (a ULID floor, or "" for all), newest first."""
        rows = await self._pool.fetch(_NEWEST_IDS, list(authors), since, total)
        return [(r["post_id"], r["author_id"]) for r in rows]

    async def timeline_items(
        self, post_ids: Sequence[str], authors: Sequence[str], before: str | None, limit: int
    ) -> list[PostView]:
        """Live posts among `post_ids` and the newest of `authors` before `before`, newest first, at most `limit`
        (a home timeline's page: its Redis ids and its big followees' posts, in one query)."""
        rows = await self._pool.fetch(_TIMELINE_ITEMS, list(post_ids), list(authors), before, limit)
        return [post_view(r) for r in rows]

    async def ancestors(self, post_id: str, max_depth: int) -> list[Shown]:
        """From the root down to the parent, at most `max_depth` of them (deleted ones as tombstones)."""
        return [shown(r) for r in await self._pool.fetch(_ANCESTORS, post_id, max_depth)]

    async def children(self, parent_ids: Sequence[str], op: str, per_parent: int, hidden: Sequence[str]) -> list[Reply]:
        """Up to `per_parent` replies shown below each parent, by parent, `op`'s first, then oldest first; none by
        the `hidden` authors."""
        rows = await self._pool.fetch(_CHILDREN, list(parent_ids), op, per_parent, list(hidden))
        return [(shown(r), r["later"]) for r in rows]

    async def more_children(
        self, post_id: str, op: str, after: tuple[int, str], limit: int, hidden: Sequence[str]
    ) -> list[Reply]:
        """The replies shown below one post after the key `after` (later, post id), at most `limit`."""
        rows = await self._pool.fetch(_MORE_CHILDREN, post_id, op, after[0], after[1], limit, list(hidden))
        return [(shown(r), r["later"]) for r in rows]


class PostgresAuthors:
    """`Authors` from the users table (the users read model stays in PostgreSQL on either store)."""

    _OF = """SELECT user_id, CASE WHEN handle LIKE '~%' THEN '' ELSE handle END AS handle, display_name, avatar_url
             FROM users WHERE user_id = ANY($1::text[])"""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def of(self, user_ids: Collection[str]) -> dict[str, Author]:
        """The names of those of these users who are projected."""
        if not user_ids:
            return {}
        rows = await self._pool.fetch(self._OF, list(user_ids))
        return {r["user_id"]: Author(r["handle"], r["display_name"], r["avatar_url"]) for r in rows}

    async def user_id_of(self, handle: str) -> str | None:
        """The id of the user with this handle (case-insensitive), None when no such user is projected."""
        return await self._pool.fetchval("SELECT user_id FROM users WHERE lower(handle) = lower($1)", handle)
