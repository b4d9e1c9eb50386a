"""The posts read model on ArangoDB: `connect_arango`, `reset_collections` and `ArangoPosts`, the same port as
`PostgresPosts` (chosen by `CHIRP_STORE=arango`, see store/backends.py).

Same semantics as store/posts.py, in AQL with bind variables only:
- `posts` documents are keyed by post id (`_key`, a ULID, so key order is creation order); one UPSERT per batch,
  so a replayed batch changes nothing. Ids must be valid document keys (ULIDs are).
- A delete leaves a tombstone (deleted_at set, content cleared, `moderated` when the operators took it down) that
  no post-parsed passes; a newer post-parsed replaces the content, an older one does not: newer by the version it
  renders (`edited_at`, an edit), then by its own time (a re-render). UPSERT cannot skip a matched document, so a
  stale write updates it with `{}` (a new revision, same content).
- `post_versions` keeps every version of a live post (key `<post id>:<time>`) for the edit history.
- Lists are keyset pages on `_key`; `reply_count` is counted at read time. Author names are not in ArangoDB: the
  users read model stays in PostgreSQL, so a page's names come from `Authors` (one query per page).
- Times are stored as fixed-width UTC ISO strings, so string order is time order.
- A data-modification query writes one collection, so a batch's posts and versions are two queries (each
  idempotent, posts first: a crash between them leaves versions that the next delivery writes).
- python-arango is synchronous: every query runs in a worker thread (`asyncio.to_thread`); the database is
  connected (and its collections created) by the first query, so building the adapter costs nothing.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from string import Template
from typing import Any, cast

from arango import ArangoClient
from arango.cursor import Cursor
from arango.database import StandardDatabase
from arango.errno import DUPLICATE_NAME
from arango.exceptions import CollectionCreateError, DatabaseCreateError

from chirp.settings import Settings
from schemas.events import PostDeleted, PostParsed
from store import posts
from store.posts import (
    NO_AUTHOR,
    Authors,
    Page,
    PostView,
    Projected,
    Reply,
    Shown,
    Tombstone,
    Version,
    newest_per_post,
)

# The collections of the posts read model (named as its PostgreSQL tables) and their indexes; add_index returns
# the existing index when one with the same definition exists.
INDEXES: dict[str, list[dict[str, Any]]] = {
    "posts": [
        {"type": "persistent", "name": "posts_by_author", "fields": ["author_id", "_key"]},
        {"type": "persistent", "name": "posts_hashtags", "fields": ["hashtags[*]"]},
        {"type": "persistent", "name": "posts_replies", "fields": ["reply_to", "_key"]},
    ],
    "post_versions": [{"type": "persistent", "name": "post_versions_by_post", "fields": ["post_id", "at"]}],
}
COLLECTIONS = tuple(INDEXES)


def connect_arango(settings: Settings, client: ArangoClient | None = None) -> StandardDatabase:
    """The chirp database, created with its collections and indexes when missing (blocking: call in a thread)."""
    client = client or ArangoClient(hosts=settings.arango_url)
    user, password = settings.arango_user, settings.arango_password.get_secret_value()
    system = client.db("_system", username=user, password=password, verify=True)
    if not system.has_database(settings.arango_db):
        try:
            system.create_database(settings.arango_db)
        except DatabaseCreateError as error:  # another process created it first
            if error.error_code != DUPLICATE_NAME:
                raise
    db = client.db(settings.arango_db, username=user, password=password)
    _create_collections(db, COLLECTIONS)
    return db


def _create_collections(db: StandardDatabase, names: Sequence[str]) -> None:
    for name in names:
        if not db.has_collection(name):
            try:
                db.create_collection(name)
            except CollectionCreateError as error:
                if error.error_code != DUPLICATE_NAME:
                    raise
        for index in INDEXES[name]:
            db.collection(name).add_index(index)


def reset_collections(db: StandardDatabase, names: Sequence[str] = COLLECTIONS) -> None:
    """Drop these collections and create them empty with their indexes: a replay rebuilds them from the log
    (blocking: call in a thread)."""
    unknown = set(names) - set(INDEXES)
    if unknown:
        raise ValueError(f"not a collection of the posts read model: {', '.join(sorted(unknown))}")
    for name in names:
        db.delete_collection(name, ignore_missing=True)
    _create_collections(db, names)


# AQL --------------------------------------------------------------------------------------------------------

# What a query returns of a post `p`: its fields, whether it is a tombstone, its replied-to post's author (for
# "Replying to @handle") and its live replies counted.
_ROW = """{
    id: p._key, author_id: p.author_id, body: p.body, html: p.html, text: p.text, hashtags: p.hashtags,
    mentions: p.mentions, reply_to: p.reply_to, created_at: p.created_at, edited_at: p.edited_at,
    deleted: p.deleted_at != null,
    reply_to_author: p.reply_to == null ? null : DOCUMENT("posts", p.reply_to).author_id,
    reply_count: LENGTH(FOR r IN posts FILTER r.reply_to == p._key AND r.deleted_at == null RETURN 1)
  }"""

# $where is one of the fixed filters below; values always travel as bind variables.
_PAGE = Template(f"""
FOR p IN posts
  FILTER $where AND p.deleted_at == null$hidden$cursor
  SORT p._key $order
  LIMIT @limit
  RETURN {_ROW}
""")

BY_KEY, BY_KEYS, EVERYONE, BY_AUTHOR = "p._key == @value", "p._key IN @value", "true", "p.author_id == @value"
BY_TAG, REPLIES_TO = "@value IN p.hashtags[*]", "p.reply_to == @value"

_EXISTS = "RETURN LENGTH(FOR p IN posts FILTER p._key == @id AND p.deleted_at == null LIMIT 1 RETURN 1) > 0"
_AUTHOR_OF = "FOR p IN posts FILTER p._key == @id AND p.deleted_at == null LIMIT 1 RETURN p.author_id"
_TAKEN_DOWN = (
    "FOR p IN posts FILTER p._key == @id AND p.deleted_at != null AND p.moderated == true LIMIT 1 RETURN p.author_id"
)

# Returns the posts inserted by this write (OLD is null), null for updated or untouched ones. Arrays compare
# element by element, and null (no edit) sorts before any string: the version's time, then the render's.
_SAVE_PARSED = """
FOR row IN @rows
  UPSERT { _key: row._key }
  INSERT row
  UPDATE (OLD.deleted_at == null AND (OLD.parsed_at == null
          OR [OLD.edited_at, OLD.parsed_at] < [row.edited_at, row.parsed_at])
    ? { body: row.body, html: row.html, text: row.text, hashtags: row.hashtags, mentions: row.mentions,
        links: row.links, parsed_at: row.parsed_at, edited_at: row.edited_at }
    : {})
  IN posts
  RETURN (OLD == null) ? { id: NEW._key, author_id: NEW.author_id, reply_to: NEW.reply_to, hashtags: NEW.hashtags }
                     : null
"""

# Every version of the batch (a re-render of one replaces its html), unless the post is deleted.
_SAVE_VERSIONS = """
FOR v IN @versions
  LET post = DOCUMENT("posts", v.post_id)
  FILTER post == null OR post.deleted_at == null
  UPSERT { _key: v._key } INSERT v UPDATE { body: v.body, html: v.html } IN post_versions
"""

_HISTORY = """
LET live = LENGTH(FOR p IN posts FILTER p._key == @id AND p.deleted_at == null LIMIT 1 RETURN 1) > 0
FOR v IN post_versions
  FILTER live AND v.post_id == @id
  SORT v.at DESC
  RETURN { body: v.body, html: v.html, at: v.at }
"""

# A delete for an unknown id inserts the tombstone; one for a live post by the same author clears it.
_SAVE_DELETED = """
FOR row IN @rows
  UPSERT { _key: row._key }
  INSERT { _key: row._key, author_id: row.author_id, body: "", html: "", text: "", hashtags: [], mentions: [],
           links: [], reply_to: null, created_at: row.at, parsed_at: null, edited_at: null, deleted_at: row.at,
           moderated: row.moderated }
  UPDATE (OLD.deleted_at == null AND OLD.author_id == row.author_id
    ? { deleted_at: row.at, body: "", html: "", text: "", hashtags: [], mentions: [], links: [],
        moderated: row.moderated }
    : {})
  IN posts
  RETURN (OLD == null OR (OLD.deleted_at == null AND OLD.author_id == row.author_id)) ? row._key : null
"""

_DELETE_VERSIONS = "FOR v IN post_versions FILTER v.post_id IN @ids REMOVE v IN post_versions"

# Conversations: one post (live or tombstone) by key; replies shown (live ones, and deleted ones that live replies
# hang below), the original author's (@op) first, then oldest first.
_POST_ROW = f"FOR p IN posts FILTER p._key == @id LIMIT 1 RETURN {_ROW}"
_SHOWN = (
    "(p.deleted_at == null OR LENGTH(FOR c IN posts FILTER c.reply_to == p._key AND c.deleted_at == null"
    " LIMIT 1 RETURN 1) > 0)"
)
_CHILDREN = f"""
FOR parent IN @parents
  LET kids = (
    FOR p IN posts
      FILTER p.reply_to == parent AND p.author_id NOT IN @hidden AND {_SHOWN}
      LET later = p.author_id != @op ? 1 : 0
      SORT later, p._key
      LIMIT @n
      RETURN MERGE({_ROW}, {{later: later}}))
  FOR kid IN kids
    RETURN kid
"""
_MORE_CHILDREN = f"""
FOR p IN posts
  FILTER p.reply_to == @parent AND p.author_id NOT IN @hidden AND {_SHOWN}
  LET later = p.author_id != @op ? 1 : 0
  FILTER [later, p._key] > [@later, @after]
  SORT later, p._key
  LIMIT @limit
  RETURN MERGE({_ROW}, {{later: later}})
"""

# By id and by author (the primary index, and posts_by_author: equality on author_id, then _key order).
_STATES = "FOR p IN posts FILTER p._key IN @ids RETURN [p._key, p.deleted_at != null]"
_AUTHORS_OF = "FOR p IN posts FILTER p._key IN @ids AND p.deleted_at == null RETURN [p._key, p.author_id]"
_IDS_BY_AUTHOR = "FOR p IN posts FILTER p.author_id == @author AND p.deleted_at == null SORT p._key ASC RETURN p._key"
_COUNT_BY_AUTHOR = "RETURN LENGTH(FOR p IN posts FILTER p.author_id == @author AND p.deleted_at == null RETURN 1)"
_RECENT_IDS = """
FOR a IN @authors
  RETURN [a, (FOR p IN posts FILTER p.author_id == a AND p.deleted_at == null SORT p._key DESC LIMIT @n
              RETURN p._key)]
"""
_NEWEST_IDS = """
FOR p IN posts
  FILTER p.author_id IN @authors AND p.deleted_at == null AND p._key > @since
  SORT p._key DESC
  LIMIT @total
  RETURN [p._key, p.author_id]
"""
# Each author's newest `@limit` live post ids before `@before` (null: from the newest).
_NEWEST_BEFORE = """
FOR a IN @authors
  FOR key IN (FOR p IN posts
                FILTER p.author_id == a AND p.deleted_at == null AND (@before == null OR p._key < @before)
                SORT p._key DESC LIMIT @limit RETURN p._key)
    RETURN key
"""


# Pure helpers -----------------------------------------------------------------------------------------------


def stamp(at: datetime) -> str:
    """A time as a fixed-width UTC ISO string (naive means UTC), so that string order is time order."""
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return at.isoformat(timespec="microseconds")


def page_query(where: str, *, desc: bool, after: bool, hidden: bool = False) -> str:
    """The AQL of one keyset page: live posts matching `where`, past the `@after` key when `after`, without the
    `@hidden` authors when `hidden`."""
    order, cmp = ("DESC", "<") if desc else ("ASC", ">")
    return _PAGE.substitute(
        where=where,
        order=order,
        hidden=" AND p.author_id NOT IN @hidden" if hidden else "",
        cursor=f" AND p._key {cmp} @after" if after else "",
    )


def post_document(event: PostParsed) -> dict[str, Any]:
    """The `posts` document a post-parsed event inserts."""
    data = event.payload
    return {
        "_key": data.post_id,
        "author_id": data.author_id,
        "body": data.body,
        "html": data.html,
        "text": data.text,
        "hashtags": list(data.hashtags),
        "mentions": list(data.mentions),
        "links": list(data.links),
        "reply_to": data.reply_to,
        "created_at": stamp(data.created_at),
        "parsed_at": stamp(event.occurred_at),
        "edited_at": stamp(data.edited_at) if data.edited_at else None,
        "deleted_at": None,
        "moderated": False,
    }


def version_documents(events: Sequence[PostParsed]) -> list[dict[str, Any]]:
    """One `post_versions` document per (post, version time) of the batch, the last render of each winning."""
    found: dict[str, dict[str, Any]] = {}
    for event in events:
        data = event.payload
        at = stamp(data.edited_at or data.created_at)
        key = f"{data.post_id}:{at}"
        found[key] = {"_key": key, "post_id": data.post_id, "at": at, "body": data.body, "html": data.html}
    return list(found.values())


def first_deletes(events: Sequence[PostDeleted]) -> list[dict[str, Any]]:
    """One tombstone row per post id, from its earliest delete (one query may not upsert a key twice)."""
    first: dict[str, PostDeleted] = {}
    for event in sorted(events, key=lambda e: e.occurred_at):
        first.setdefault(event.payload.post_id, event)
    return [
        {"_key": k, "author_id": e.payload.author_id, "at": stamp(e.occurred_at), "moderated": e.payload.moderated}
        for k, e in first.items()
    ]


def post_view(row: dict[str, Any], authors: dict[str, posts.Author]) -> PostView:
    """A page query's row as a PostView, its names from `authors` (the PostgreSQL adapter's mapping)."""
    author = authors.get(row["author_id"], NO_AUTHOR)
    replied = authors.get(row.get("reply_to_author") or "", NO_AUTHOR)
    edited = row.get("edited_at")
    return posts.post_view({
        **row,
        "post_id": row["id"],
        "handle": author.handle,
        "display_name": author.display_name,
        "avatar_url": author.avatar_url,
        "reply_to_handle": replied.handle,
        "created_at": datetime.fromisoformat(row["created_at"]),
        "edited_at": datetime.fromisoformat(edited) if edited else None,
    })  # fmt: skip


def shown_of(row: dict[str, Any], authors: dict[str, posts.Author]) -> Shown:
    """A conversation's row as a post, or as a tombstone when deleted."""
    if row["deleted"]:
        return Tombstone(row["id"], row["reply_to"], datetime.fromisoformat(row["created_at"]))
    return post_view(row, authors)


def page_of(rows: list[dict[str, Any]], limit: int, authors: dict[str, posts.Author]) -> Page:
    """A page from up to limit + 1 rows: the extra row only says that another page follows."""
    items = [post_view(r, authors) for r in rows[:limit]]
    return Page(items, items[-1].id if len(rows) > limit else None)


def authors_named(rows: list[dict[str, Any]]) -> set[str]:
    """The users whose names a page shows: its authors and the authors of the posts it replies to."""
    return {r["author_id"] for r in rows} | {r["reply_to_author"] for r in rows if r.get("reply_to_author")}


# The adapter ------------------------------------------------------------------------------------------------


class ArangoPosts:
    """`PostReadModel` on ArangoDB (collections from `connect_arango`), author names from `authors`."""

    def __init__(self, db: StandardDatabase | Callable[[], StandardDatabase], authors: Authors) -> None:
        self._db: StandardDatabase | None = db if isinstance(db, StandardDatabase) else None
        self._connect = db if not isinstance(db, StandardDatabase) else None
        self._connecting = threading.Lock()
        self._authors = authors

    @classmethod
    def from_settings(cls, settings: Settings, authors: Authors) -> ArangoPosts:
        """The adapter on `settings`' server, connected by its first query."""
        return cls(lambda: connect_arango(settings), authors)

    def database(self) -> StandardDatabase:
        """The database, connected on first use (blocking: call in a thread)."""
        with self._connecting:
            if self._db is None:
                assert self._connect is not None
                self._db = self._connect()
            return self._db

    def _run(self, query: str, bind_vars: dict[str, Any]) -> list[Any]:
        cursor = cast(Cursor, self.database().aql.execute(query, bind_vars=bind_vars))
        return list(cursor)  # drains every batch here, in the worker thread

    async def _query(self, query: str, **bind_vars: Any) -> list[Any]:
        return await asyncio.to_thread(self._run, query, bind_vars)

    async def _page(
        self, where: str, value: Any, after: str | None, limit: int, *, desc: bool, hidden: Sequence[str] = ()
    ) -> Page:
        binds: dict[str, Any] = {"limit": limit + 1}
        if value is not None:  # AQL rejects bind variables the query does not use
            binds["value"] = value
        if after is not None:
            binds["after"] = after
        if hidden:
            binds["hidden"] = list(hidden)
        rows = await self._query(page_query(where, desc=desc, after=after is not None, hidden=bool(hidden)), **binds)
        return page_of(rows, limit, await self._authors.of(authors_named(rows)))

    async def get(self, post_id: str) -> PostView | None:
        """The live post with this id, None when unknown or deleted."""
        page = await self._page(BY_KEY, post_id, None, 1, desc=True)
        return page.items[0] if page.items else None

    async def exists(self, post_id: str) -> bool:
        """Whether a live post has this id."""
        return bool((await self._query(_EXISTS, id=post_id))[0])

    async def author_of(self, post_id: str) -> str | None:
        """The author of the live post with this id, None when unknown or deleted."""
        found = await self._query(_AUTHOR_OF, id=post_id)
        return found[0] if found else None

    async def many(self, post_ids: Sequence[str]) -> list[PostView]:
        """The live posts among these ids (any order), in one query."""
        if not post_ids:
            return []
        return (await self._page(BY_KEYS, list(post_ids), None, len(post_ids), desc=True)).items

    async def latest(self, after: str | None, limit: int, *, hidden: Sequence[str] = ()) -> Page:
        """Everyone's posts, newest first."""
        return await self._page(EVERYONE, None, after, limit, desc=True, hidden=hidden)

    async def by_author(self, author_id: str, after: str | None, limit: int, *, hidden: Sequence[str] = ()) -> Page:
        """One author's posts, newest first."""
        return await self._page(BY_AUTHOR, author_id, after, limit, desc=True, hidden=hidden)

    async def by_tag(self, tag: str, after: str | None, limit: int, *, hidden: Sequence[str] = ()) -> Page:
        """Posts carrying the hashtag key `tag` (case-folded, NFC), newest first."""
        return await self._page(BY_TAG, tag, after, limit, desc=True, hidden=hidden)

    async def replies(self, post_id: str, after: str | None, limit: int, *, hidden: Sequence[str] = ()) -> Page:
        """Live replies to a post, oldest first (conversation order)."""
        return await self._page(REPLIES_TO, post_id, after, limit, desc=False, hidden=hidden)

    async def user_id_of(self, handle: str) -> str | None:
        """The id of the user with this handle (case-insensitive), None when no such user is projected."""
        return await self._authors.user_id_of(handle)

    async def save_parsed(self, events: Sequence[PostParsed]) -> list[Projected]:
        """Upsert parsed posts in one query, then their versions; returns the posts this write made visible for the
        first time."""
        rows = await self._query(_SAVE_PARSED, rows=[post_document(e) for e in newest_per_post(events)])
        await self._query(_SAVE_VERSIONS, versions=version_documents(events))
        return [Projected(r["id"], r["author_id"], r["reply_to"], r["hashtags"]) for r in rows if r is not None]

    async def save_deleted(self, events: Sequence[PostDeleted]) -> list[str]:
        """Tombstone posts in one query and drop their versions; returns the ids this write removed or tombstoned
        first."""
        removed = [key for key in await self._query(_SAVE_DELETED, rows=first_deletes(events)) if key is not None]
        if removed:
            await self._query(_DELETE_VERSIONS, ids=removed)
        return removed

    async def taken_down(self, post_id: str) -> str | None:
        """The author of this post when the operators took it down, else None."""
        found = await self._query(_TAKEN_DOWN, id=post_id)
        return found[0] if found else None

    async def history(self, post_id: str) -> list[Version]:
        """Every version of a live post, newest first (empty when unknown or deleted)."""
        rows = await self._query(_HISTORY, id=post_id)
        return [Version(r["body"], r["html"], datetime.fromisoformat(r["at"])) for r in rows]

    async def states(self, post_ids: Sequence[str]) -> dict[str, bool]:
        """The posts among these that the model holds, live or tombstoned: post id -> whether it is deleted."""
        return dict(await self._query(_STATES, ids=list(post_ids))) if post_ids else {}

    async def authors_of(self, post_ids: Sequence[str]) -> dict[str, str]:
        """The authors of the live posts among these ids."""
        return dict(await self._query(_AUTHORS_OF, ids=list(post_ids))) if post_ids else {}

    async def ids_by_author(self, author_id: str) -> list[str]:
        """Every live post id of an author, oldest first."""
        return await self._query(_IDS_BY_AUTHOR, author=author_id)

    async def count_by_author(self, author_id: str) -> int:
        """How many live posts an author has."""
        return int((await self._query(_COUNT_BY_AUTHOR, author=author_id))[0])

    async def recent_ids(self, authors: Sequence[str], per_author: int) -> dict[str, list[str]]:
        """Each author's newest `per_author` live post ids, newest first."""
        return dict(await self._query(_RECENT_IDS, authors=list(authors), n=per_author)) if authors else {}

    async def newest_ids(self, authors: Sequence[str], since: str, total: int) -> list[tuple[str, str]]:
        """(post_id, author_id) of the newest `total` live posts of these authors together with ids above `since`
        (a ULID floor, or "" for all), newest first."""
        if not authors:
            return []
        return [(k, a) for k, a in await self._query(_NEWEST_IDS, authors=list(authors), since=since, total=total)]

    async def timeline_items(
        self, post_ids: Sequence[str], authors: Sequence[str], before: str | None, limit: int
    ) -> list[PostView]:
        """Live posts among `post_ids` and the newest of `authors` before `before`, newest first, at most `limit`:
        the authors' ids in one query, then one page of them all."""
        ids = list(post_ids)
        if authors:
            ids += await self._query(_NEWEST_BEFORE, authors=list(authors), before=before, limit=limit)
        if not ids:
            return []
        return (await self._page(BY_KEYS, sorted(set(ids)), None, limit, desc=True)).items

    async def ancestors(self, post_id: str, max_depth: int) -> list[Shown]:
        """From the root down to the parent, at most `max_depth` of them (deleted ones as tombstones): one query
        per level, following `reply_to` up."""
        found = await self._query(_POST_ROW, id=post_id)
        rows: list[dict[str, Any]] = []
        while found and found[0]["reply_to"] is not None and len(rows) < max_depth:
            found = await self._query(_POST_ROW, id=found[0]["reply_to"])
            rows += found
        authors = await self._authors.of(authors_named(rows))
        return [shown_of(r, authors) for r in reversed(rows)]

    async def children(self, parent_ids: Sequence[str], op: str, per_parent: int, hidden: Sequence[str]) -> list[Reply]:
        """Up to `per_parent` replies shown below each parent, by parent, `op`'s first, then oldest first; none by
        the `hidden` authors."""
        if not parent_ids:
            return []
        binds = {"parents": list(parent_ids), "op": op, "n": per_parent, "hidden": list(hidden)}
        return await self._replies(_CHILDREN, binds)

    async def more_children(
        self, post_id: str, op: str, after: tuple[int, str], limit: int, hidden: Sequence[str]
    ) -> list[Reply]:
        """The replies shown below one post after the key `after` (later, post id), at most `limit`."""
        binds = {"parent": post_id, "op": op, "later": after[0], "after": after[1], "limit": limit,
                 "hidden": list(hidden)}  # fmt: skip
        return await self._replies(_MORE_CHILDREN, binds)

    async def _replies(self, query: str, binds: dict[str, Any]) -> list[Reply]:
        rows = await self._query(query, **binds)
        authors = await self._authors.of(authors_named(rows))
        return [(shown_of(r, authors), r["later"]) for r in rows]
