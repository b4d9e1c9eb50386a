"""The posts read model on ArangoDB: `connect_arango` and `ArangoPosts`, the same port as `PostgresPosts`.

Same semantics as store/posts.py, in AQL with bind variables only:
- `posts` documents are keyed by post id (`_key`, a ULID, so key order is creation order); one UPSERT per batch,
  so a replayed batch changes nothing. Ids must be valid document keys (ULIDs are).
- A delete leaves a tombstone (deleted_at set, content cleared) that no post-parsed passes; a newer post-parsed
  (a re-render) replaces the content, an older one does not. UPSERT cannot skip a matched document, so a stale
  write updates it with `{}` (a new revision, same content).
- Lists are keyset pages on `_key`; `reply_count` is counted at read time; author names come from `users`
  (key = user id, `handle_ci` = lower-cased handle), empty when the author is unknown or a `~` placeholder.
- Times are stored as fixed-width UTC ISO strings, so string order is time order (last writer wins on parsed_at).
- python-arango is synchronous: every query runs in a worker thread (`asyncio.to_thread`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
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
from store.posts import Page, PostView, Projected, newest_per_post

# Indexes per collection; add_index returns the existing index when one with the same definition exists.
INDEXES: dict[str, list[dict[str, Any]]] = {
    "posts": [
        {"type": "persistent", "name": "posts_by_author", "fields": ["author_id", "_key"]},
        {"type": "persistent", "name": "posts_hashtags", "fields": ["hashtags[*]"]},
        {"type": "persistent", "name": "posts_replies", "fields": ["reply_to", "_key"]},
    ],
    # Sparse: documents another writer stored without handle_ci are left out rather than colliding on null.
    "users": [{"type": "persistent", "name": "users_handle_ci", "fields": ["handle_ci"], "unique": True,
               "sparse": True}],
}  # fmt: skip


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
    for name, indexes in INDEXES.items():
        if not db.has_collection(name):
            try:
                db.create_collection(name)
            except CollectionCreateError as error:
                if error.error_code != DUPLICATE_NAME:
                    raise
        for index in indexes:
            db.collection(name).add_index(index)
    return db


# AQL --------------------------------------------------------------------------------------------------------

# $where is one of the fixed filters below; values always travel as bind variables.
_PAGE = Template("""
FOR p IN posts
  FILTER $where AND p.deleted_at == null$cursor
  SORT p._key $order
  LIMIT @limit
  LET author = FIRST(FOR u IN users FILTER u._key == p.author_id LIMIT 1 RETURN u)
  LET handle = NOT_NULL(author.handle, "")
  RETURN {
    id: p._key, author_id: p.author_id, handle: STARTS_WITH(handle, "~") ? "" : handle,
    display_name: NOT_NULL(author.display_name, ""), avatar_url: NOT_NULL(author.avatar_url, ""),
    body: p.body, html: p.html, text: p.text, hashtags: p.hashtags, mentions: p.mentions, reply_to: p.reply_to,
    created_at: p.created_at,
    reply_count: LENGTH(FOR r IN posts FILTER r.reply_to == p._key AND r.deleted_at == null RETURN 1)
  }
""")

BY_KEY, EVERYONE, BY_AUTHOR = "p._key == @value", "true", "p.author_id == @value"
BY_TAG, REPLIES_TO = "@value IN p.hashtags[*]", "p.reply_to == @value"

_EXISTS = "RETURN LENGTH(FOR p IN posts FILTER p._key == @id AND p.deleted_at == null LIMIT 1 RETURN 1) > 0"

_USER_ID_OF = "FOR u IN users FILTER u.handle_ci == LOWER(@handle) LIMIT 1 RETURN u._key"

_SAVE_USER = """
UPSERT { _key: @user_id }
INSERT { _key: @user_id, handle: @handle, handle_ci: LOWER(@handle), display_name: @display_name,
         avatar_url: @avatar_url }
UPDATE { handle: @handle, handle_ci: LOWER(@handle), display_name: @display_name, avatar_url: @avatar_url }
IN users
"""

# Returns the posts inserted by this write (OLD is null), null for updated or untouched ones.
_SAVE_PARSED = """
FOR row IN @rows
  UPSERT { _key: row._key }
  INSERT row
  UPDATE (OLD.deleted_at == null AND (OLD.parsed_at == null OR OLD.parsed_at < row.parsed_at)
    ? { body: row.body, html: row.html, text: row.text, hashtags: row.hashtags, mentions: row.mentions,
        links: row.links, parsed_at: row.parsed_at }
    : {})
  IN posts
  RETURN (OLD == null) ? { id: NEW._key, author_id: NEW.author_id, reply_to: NEW.reply_to, hashtags: NEW.hashtags }
                     : null
"""

# A delete for an unknown id inserts the tombstone; one for a live post by the same author clears it.
_SAVE_DELETED = """
FOR row IN @rows
  UPSERT { _key: row._key }
  INSERT { _key: row._key, author_id: row.author_id, body: "", html: "", text: "", hashtags: [], mentions: [],
           links: [], reply_to: null, created_at: row.at, parsed_at: null, deleted_at: row.at }
  UPDATE (OLD.deleted_at == null AND OLD.author_id == row.author_id
    ? { deleted_at: row.at, body: "", html: "", text: "", hashtags: [], mentions: [], links: [] }
    : {})
  IN posts
  RETURN (OLD == null OR (OLD.deleted_at == null AND OLD.author_id == row.author_id)) ? row._key : null
"""


# Pure helpers -----------------------------------------------------------------------------------------------


def stamp(at: datetime) -> str:
    """A time as a fixed-width UTC ISO string (naive means UTC), so that string order is time order."""
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return at.isoformat(timespec="microseconds")


def page_query(where: str, *, desc: bool, after: bool) -> str:
    """The AQL of one keyset page: live posts matching `where`, past the `@after` key when `after`."""
    order, cmp = ("DESC", "<") if desc else ("ASC", ">")
    return _PAGE.substitute(where=where, order=order, cursor=f" AND p._key {cmp} @after" if after else "")


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
        "deleted_at": None,
    }


def first_deletes(events: Sequence[PostDeleted]) -> list[dict[str, str]]:
    """One tombstone row per post id, from its earliest delete (one query may not upsert a key twice)."""
    first: dict[str, PostDeleted] = {}
    for event in sorted(events, key=lambda e: e.occurred_at):
        first.setdefault(event.payload.post_id, event)
    return [{"_key": k, "author_id": e.payload.author_id, "at": stamp(e.occurred_at)} for k, e in first.items()]


def post_view(row: dict[str, Any]) -> PostView:
    """A page query's row as a PostView (the PostgreSQL adapter's mapping; ids and times as AQL returns them)."""
    return posts.post_view({**row, "post_id": row["id"], "created_at": datetime.fromisoformat(row["created_at"])})


def page_of(rows: list[dict[str, Any]], limit: int) -> Page:
    """A page from up to limit + 1 rows: the extra row only says that another page follows."""
    items = [post_view(r) for r in rows[:limit]]
    return Page(items, items[-1].id if len(rows) > limit else None)


# The adapter ------------------------------------------------------------------------------------------------


class ArangoPosts:
    """`PostReadModel` on ArangoDB (collections from `connect_arango`)."""

    def __init__(self, db: StandardDatabase) -> None:
        self._db = db

    def _run(self, query: str, bind_vars: dict[str, Any]) -> list[Any]:
        cursor = cast(Cursor, self._db.aql.execute(query, bind_vars=bind_vars))
        return list(cursor)  # drains every batch here, in the worker thread

    async def _query(self, query: str, **bind_vars: Any) -> list[Any]:
        return await asyncio.to_thread(self._run, query, bind_vars)

    async def _page(self, where: str, value: str | None, after: str | None, limit: int, *, desc: bool) -> Page:
        binds: dict[str, Any] = {"limit": limit + 1}
        if value is not None:  # AQL rejects bind variables the query does not use
            binds["value"] = value
        if after is not None:
            binds["after"] = after
        rows = await self._query(page_query(where, desc=desc, after=after is not None), **binds)
        return page_of(rows, limit)

    async def get(self, post_id: str) -> PostView | None:
        """The live post with this id, None when unknown or deleted."""
        page = await self._page(BY_KEY, post_id, None, 1, desc=True)
        return page.items[0] if page.items else None

    async def exists(self, post_id: str) -> bool:
        """Whether a live post has this id."""
        return bool((await self._query(_EXISTS, id=post_id))[0])

    async def latest(self, after: str | None, limit: int) -> Page:
        """Everyone's posts, newest first."""
        return await self._page(EVERYONE, None, after, limit, desc=True)

    async def by_author(self, author_id: str, after: str | None, limit: int) -> Page:
        """One author's posts, newest first."""
        return await self._page(BY_AUTHOR, author_id, after, limit, desc=True)

    async def by_tag(self, tag: str, after: str | None, limit: int) -> Page:
        """Posts carrying the hashtag key `tag` (case-folded, NFC), newest first."""
        return await self._page(BY_TAG, tag, after, limit, desc=True)

    async def replies(self, post_id: str, after: str | None, limit: int) -> Page:
        """Live replies to a post, oldest first (conversation order)."""
        return await self._page(REPLIES_TO, post_id, after, limit, desc=False)

    async def user_id_of(self, handle: str) -> str | None:
        """The id of the user with this handle (case-insensitive), None when no such user is projected."""
        found = await self._query(_USER_ID_OF, handle=handle)
        return found[0] if found else None

    async def save_user(self, user_id: str, handle: str, display_name: str, avatar_url: str) -> None:
        """Upsert an author's names (no users projection writes to ArangoDB yet: seeding and tests use this)."""
        await self._query(_SAVE_USER, user_id=user_id, handle=handle, display_name=display_name,
                          avatar_url=avatar_url)  # fmt: skip

    async def save_parsed(self, events: Sequence[PostParsed]) -> list[Projected]:
        """Upsert parsed posts in one query; returns the posts this write made visible for the first time."""
        rows = await self._query(_SAVE_PARSED, rows=[post_document(e) for e in newest_per_post(events)])
        return [Projected(r["id"], r["author_id"], r["reply_to"], r["hashtags"]) for r in rows if r is not None]

    async def save_deleted(self, events: Sequence[PostDeleted]) -> list[str]:
        """Tombstone posts in one query; returns the ids this write removed or tombstoned first."""
        return [key for key in await self._query(_SAVE_DELETED, rows=first_deletes(events)) if key is not None]
