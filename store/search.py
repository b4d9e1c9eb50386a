"""The search read model: the `SearchIndex` port and its PostgreSQL adapter, `PostgresSearch`.

Writes come from the search consumer, one statement per batch; reads serve `GET /api/search` and `/api/tags/{tag}`.
- `search_posts` / `search_users` (migration 030) are this model's own tables; a delete leaves a tombstone that a
  late post-parsed never revives; every profile field is last-writer-wins by (occurred_at, value), so replays,
  duplicates and out-of-order events converge to the same rows.
- A query is parsed in Python (store/search_query.py) into terms; the SQL turns each term into a tsquery with
  `phraseto_tsquery($text)` and combines them with the `search_tsq_and/or` aggregates: one fixed statement, user
  text only in parameters.
- Ranking runs over a bounded candidate set: the newest `CANDIDATES` matches, read in time order from the RUM
  index on `doc` (it keeps `created_at` beside the lexemes), so a common word costs one index search and
  `CANDIDATES` table visits however many posts it matches. Among candidates, posts carrying a searched hashtag
  exactly come first, then `ts_rank` times a recency boost (x2 for a post just written, x1.5 a day old, tending to
  x1). A hashtag is also a word of the text, so its posts are among the text matches.
- Pages are offsets into that ranking, frozen by the cursor at the first page's newest candidate and reference
  time, so posts arriving meanwhile shift nothing. Past the last ranked page, when the candidates were not all the
  matches, the older matches follow newest first (`search_older`, paged by time and id).
- Snippets come from `ts_headline` with private-use characters as delimiters (removed from the text first), then
  HTML-escaped, then the delimiters become `<mark>`: the only markup a snippet can carry.
- Authors come from `search_users` (a LEFT JOIN: a post whose author is not indexed yet still shows); follower
  counts from the `users` table of the users consumer (LEFT JOIN, 0 when missing).
- A suspended account (`chirp reports resolve --action suspend`) is flagged in `search_users`, before or after its
  registration arrives, and no user search finds it; its posts leave by their moderated post-deleted events.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import asyncpg

from schemas.events import PostDeleted, PostParsed
from store.posts import PARSED_ROWS, newer_version, newest_per_post, parsed_columns
from store.search_query import ParsedQuery
from store.users import ProfileChange, chosen_name_wins

# The search statements are long and every part of them hangs on parameters: planning one costs about as much as
# running a typical query. Connections serving searches (`connect(..., server_settings=PLAN_ONCE)`) plan each
# prepared statement once and reuse that plan, whose CTEs switch on the parameters at run time.
PLAN_ONCE = {"plan_cache_mode": "force_generic_plan"}
CANDIDATES = 200  # the newest matches ranked; older ones follow unranked, newest first (`search_older`)
USER_CANDIDATES = 1000  # users matching a user search, ranked
WHOLE_SNIPPET_CHARS = 300  # a post's text up to this long is its own snippet; longer ones get fragments
_MARK_OPEN, _MARK_CLOSE = "\ue000", "\ue001"


PROFILE_FIELDS = ("handle", "display_name", "bio", "avatar_url")


@dataclass(frozen=True, slots=True)
class PostHits:
    items: list[dict[str, Any]]  # posts as the API shows them, plus `snippet`
    more: bool  # another page of this kind follows
    ceiling: str | None  # the newest candidate's id: later pages rank only posts up to it
    older: tuple[datetime, str] | None = None  # (time, id) below which `search_older` goes on, if anything may be


@dataclass(frozen=True, slots=True)
class TagStats:
    tag: str
    posts_count: int
    first_used_at: datetime
    last_used_at: datetime


class SearchIndex(Protocol):
    async def save_parsed(self, events: Sequence[PostParsed]) -> None: ...
    async def save_deleted(self, events: Sequence[PostDeleted]) -> None: ...
    async def save_profiles(self, changes: Sequence[ProfileChange]) -> None: ...
    async def save_suspended(self, user_ids: Sequence[str]) -> None: ...
    async def search_posts(
        self,
        query: ParsedQuery,
        *,
        offset: int,
        limit: int,
        ref: datetime,
        ceiling: str | None,
        hidden: Sequence[str] = (),
    ) -> PostHits: ...
    async def search_older(
        self, query: ParsedQuery, *, before: tuple[datetime, str], limit: int, hidden: Sequence[str] = ()
    ) -> PostHits: ...
    async def search_users(
        self, query: ParsedQuery, *, offset: int, limit: int, hidden: Sequence[str] = ()
    ) -> tuple[list[dict[str, Any]], bool]: ...
    async def tag_stats(self, tag: str) -> TagStats | None: ...


# Pure helpers -------------------------------------------------------------------------------------------------


def merge_profiles(changes: Sequence[ProfileChange]) -> list[dict[str, Any]]:
    """One row per user: per field the newest (at, value) among `changes` (one statement may not touch a row twice);
    a display name the user chose outranks GitHub's whatever the times (migration 040)."""
    rows: dict[str, dict[str, Any]] = {}
    ranks: dict[tuple[str, str], tuple[bool, datetime, str]] = {}
    for change in changes:
        row = rows.setdefault(change.user_id, {"user_id": change.user_id, "display_name_chosen": False})
        for name in PROFILE_FIELDS:
            value = getattr(change, name)
            if value is None:
                continue
            rank = (name == "display_name" and change.name_chosen, change.at, value)
            if ranks.get((change.user_id, name), rank) <= rank:
                ranks[change.user_id, name] = rank
                row[name], row[f"{name}_at"] = value, change.at
                if name == "display_name":
                    row["display_name_chosen"] = rank[0]
    return [{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()} for row in rows.values()]


def snippet_html(raw: str) -> str:
    """A ts_headline result (private-use delimiters) as HTML whose only markup is `<mark>`."""
    return html.escape(raw).replace(_MARK_OPEN, "<mark>").replace(_MARK_CLOSE, "</mark>")


def like_pattern(text: str) -> str:
    """`%text%` for LIKE, with the user's `%`, `_` and `\\` taken literally."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def user_words(query: ParsedQuery) -> str:
    """What a user search matches: the positive words, lower-case, without `@` / `#` sigils."""
    return " ".join(w.lstrip("@#") for w in query.words.split() if w.lstrip("@#"))


# SQL ----------------------------------------------------------------------------------------------------------

_SAVE_PARSED = f"""
INSERT INTO search_posts AS s (post_id, author_id, body, html, text, hashtags, mentions, reply_to, created_at,
                               parsed_at, edited_at)
SELECT post_id, author_id, body, html, text, hashtags::text[], mentions::text[], reply_to, created_at, parsed_at,
       edited_at
FROM {PARSED_ROWS}
ON CONFLICT (post_id) DO UPDATE SET
    body = EXCLUDED.body, html = EXCLUDED.html, text = EXCLUDED.text, hashtags = EXCLUDED.hashtags,
    mentions = EXCLUDED.mentions, parsed_at = EXCLUDED.parsed_at, edited_at = EXCLUDED.edited_at
WHERE s.deleted_at IS NULL AND {newer_version("s")}
"""

# A delete for an unknown id inserts the tombstone; one for a live post by the same author clears it.
_SAVE_DELETED = """
INSERT INTO search_posts AS s (post_id, author_id, created_at, deleted_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $3::timestamptz[])
ON CONFLICT (post_id) DO UPDATE SET
    deleted_at = EXCLUDED.deleted_at, body = '', html = '', text = '', hashtags = '{}', mentions = '{}'
WHERE s.deleted_at IS NULL AND s.author_id = EXCLUDED.author_id
"""


def _newer(name: str) -> str:
    return (
        f"EXCLUDED.{name}_at IS NOT NULL AND (s.{name}_at IS NULL"
        f" OR (s.{name}_at, s.{name}) < (EXCLUDED.{name}_at, EXCLUDED.{name}))"
    )


_ASSIGN_NEWEST = ",\n".join(
    f"    {n} = CASE WHEN {_newer(n)} THEN EXCLUDED.{n} ELSE s.{n} END,\n"
    f"    {n}_at = CASE WHEN {_newer(n)} THEN EXCLUDED.{n}_at ELSE s.{n}_at END"
    for n in PROFILE_FIELDS
    if n != "display_name"
)
_SAVE_PROFILES = f"""
INSERT INTO search_users AS s (user_id, handle, handle_at, display_name, display_name_at, display_name_chosen, bio,
                               bio_at, avatar_url, avatar_url_at)
SELECT user_id, handle, handle_at, coalesce(display_name, ''), display_name_at, display_name_chosen,
       coalesce(bio, ''), bio_at, coalesce(avatar_url, ''), avatar_url_at
FROM jsonb_to_recordset($1::jsonb) AS x(
    user_id text, handle text, handle_at timestamptz, display_name text, display_name_at timestamptz,
    display_name_chosen boolean, bio text, bio_at timestamptz, avatar_url text, avatar_url_at timestamptz)
ON CONFLICT (user_id) DO UPDATE SET
{_ASSIGN_NEWEST},
    {chosen_name_wins("s")}
"""

_HEADLINE = f"StartSel={_MARK_OPEN}, StopSel={_MARK_CLOSE}"

_COLS = "p.post_id, p.doc, p.created_at, p.hashtags"  # what ranking needs, carried from the index search


def _query_ctes(authors: str) -> str:
    """The CTEs every post search starts with: `query` ($1 group ids, $2 term texts, $3 negated flags) and
    `authors` (the users named by `from:`, handles in the parameter `authors`)."""
    return f"""WITH terms AS (
    SELECT x.g, CASE WHEN x.neg THEN !! phraseto_tsquery('english', x.t) ELSE phraseto_tsquery('english', x.t) END AS q
    FROM unnest($1::int[], $2::text[], $3::bool[]) AS x(g, t, neg)
), query AS MATERIALIZED (
    SELECT q, coalesce(numnode(q) > 0, false) AS has_q, coalesce(querytree(q) NOT IN ('', 'T'), false) AS ok
    FROM (SELECT search_tsq_and(q) AS q FROM (SELECT search_tsq_or(q) AS q FROM terms GROUP BY g) grp) t
), authors AS MATERIALIZED (
    SELECT user_id FROM search_users WHERE lower(handle) = ANY({authors}::text[])
)"""


def _matches(authors: str, keep: str, order: str, limit: str) -> str:
    """The matches passing `keep`: of the words in the RUM index's time `order`; for `from:` alone, by id."""
    return f"""SELECT {_COLS} FROM search_posts p
    WHERE (SELECT ok FROM query) AND p.deleted_at IS NULL AND p.doc @@ (SELECT q FROM query) AND {keep}
      AND (cardinality({authors}::text[]) = 0 OR p.author_id IN (SELECT user_id FROM authors))
    ORDER BY {order} LIMIT {limit}
), by_author AS MATERIALIZED (
    -- `from:@handle` with no words (or only exclusions): that author's newest posts.
    SELECT {_COLS} FROM search_posts p
    WHERE NOT (SELECT ok FROM query) AND cardinality({authors}::text[]) > 0 AND p.deleted_at IS NULL
      AND p.author_id IN (SELECT user_id FROM authors) AND {keep}
      AND (NOT (SELECT has_q FROM query) OR p.doc @@ (SELECT q FROM query))
    ORDER BY p.post_id DESC LIMIT {limit}
), cand AS (
    SELECT * FROM matched UNION ALL SELECT * FROM by_author"""


def _page(source: str, order: str) -> str:
    """The posts of `source` (a CTE with post_id) as the API shows them, with snippets, in `order`."""
    return f"""SELECT r.*, p.author_id, p.body, p.html, p.text, p.mentions, p.reply_to,
       coalesce(u.handle, '') AS handle, coalesce(u.display_name, '') AS display_name,
       coalesce(u.avatar_url, '') AS avatar_url,
       (SELECT count(*) FROM search_posts x WHERE x.reply_to = p.post_id AND x.deleted_at IS NULL) AS reply_count,
       (SELECT CASE WHEN pu.handle LIKE '~%' THEN '' ELSE coalesce(pu.handle, '') END
        FROM search_posts pp JOIN search_users pu ON pu.user_id = pp.author_id
        WHERE pp.post_id = p.reply_to) AS reply_to_handle,
       CASE WHEN query.has_q
            THEN ts_headline('english', translate(p.text, E'\\uE000\\uE001', ''), query.q,
                             CASE WHEN length(p.text) <= {WHOLE_SNIPPET_CHARS} THEN '{_HEADLINE}, HighlightAll=true'
                             ELSE '{_HEADLINE}, MaxWords=35, MinWords=15, MaxFragments=2, FragmentDelimiter=" … "'
                             END)
            ELSE translate(left(p.text, 200), E'\\uE000\\uE001', '') END AS snippet
FROM {source} r JOIN search_posts p USING (post_id) LEFT JOIN search_users u ON u.user_id = p.author_id, query
ORDER BY {order}"""


# $1-$3 the query (see `_query_ctes`), $4 exact tags, $5 author handles, $6 ceiling id (or NULL), $7 reference time
# of the recency boost, $8 offset, $9 rows wanted, $10 the candidates kept (CANDIDATES), $11 the authors the reader
# does not see (store/relations.py). Each row also carries the
# candidate count and the oldest candidate (time, id): where `SEARCH_OLDER` goes on once the ranking is paged through.
SEARCH_POSTS = f"""
{_query_ctes("$5")}, matched AS MATERIALIZED (
    -- The newest matches, in the RUM index's time order (nearest the reference time first).
    {
    _matches(
        "$5",
        "($6::text IS NULL OR p.post_id <= $6::text) AND p.author_id NOT IN (SELECT unnest($11::text[]))",
        "p.created_at <=> $7::timestamptz",
        "$10::int",
    )
}
), ranked AS (
    SELECT c.post_id, c.hashtags, c.created_at, c.hashtags && $4::text[] AS exact,
           CASE WHEN query.has_q THEN ts_rank(c.doc, query.q) ELSE 0 END
           * (1 + 1 / (1 + greatest(0, date_part('epoch', $7::timestamptz - c.created_at)) / 86400.0)) AS score,
           (SELECT max(post_id) FROM cand) AS ceiling, (SELECT count(*) FROM cand) AS found,
           (SELECT created_at FROM cand ORDER BY created_at, post_id LIMIT 1) AS floor_at,
           (SELECT post_id FROM cand ORDER BY created_at, post_id LIMIT 1) AS floor_id
    FROM cand c, query
    ORDER BY exact DESC, score DESC, c.post_id DESC
    OFFSET $8 LIMIT $9
)
{_page("ranked", "r.exact DESC, r.score DESC, r.post_id DESC")}
"""

# $1-$3 the query, $4 author handles, $5 and $6 the (time, id) to go on below, $7 rows wanted, $8 the authors the
# reader does not see: the older matches, newest first, unranked (the ranked candidates were the newest).
SEARCH_OLDER = f"""
{_query_ctes("$4")}, matched AS MATERIALIZED (
    {
    _matches(
        "$4",
        "(p.created_at, p.post_id) < ($5::timestamptz, $6::text) AND p.author_id NOT IN (SELECT unnest($8::text[]))",
        "p.created_at <=| $5::timestamptz",
        "$7::int",
    )
}
), older AS (
    SELECT post_id, hashtags, created_at FROM cand
)
{_page("older", "r.created_at DESC, r.post_id DESC")}
"""

# $1 words, $2 LIKE pattern, $3 offset, $4 rows wanted. Stop words alone match only a handle spelled that way.
SEARCH_USERS = f"""
WITH cand AS (
    SELECT user_id FROM search_users
    WHERE handle IS NOT NULL AND NOT suspended AND (lower(handle) = $1
           OR ((SELECT numnode(plainto_tsquery('english', $1)) > 0) AND (names LIKE $2 OR names %> $1)))
    LIMIT {USER_CANDIDATES}
)
SELECT s.handle, s.display_name, s.avatar_url, coalesce(u.followers_count, 0) AS followers_count
FROM cand JOIN search_users s USING (user_id) LEFT JOIN users u ON u.user_id = s.user_id
WHERE s.user_id NOT IN (SELECT unnest($5::text[]))
ORDER BY lower(s.handle) = $1 DESC, word_similarity($1, s.names) DESC, followers_count DESC, lower(s.handle),
         s.user_id
OFFSET $3 LIMIT $4
"""

_TAG_STATS = """
SELECT count(*) AS n, min(created_at) AS first, max(created_at) AS last
FROM search_posts WHERE deleted_at IS NULL AND hashtags @> ARRAY[$1::text]
"""


def _post_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["post_id"],
        "author_id": row["author_id"],
        "author": {"handle": row["handle"], "display_name": row["display_name"], "avatar_url": row["avatar_url"]},
        "body": row["body"],
        "html": row["html"],
        "text": row["text"],
        "hashtags": row["hashtags"],
        "mentions": row["mentions"],
        "reply_to": row["reply_to"],
        "reply_to_handle": row["reply_to_handle"] or "",
        "reply_count": row["reply_count"],
        "created_at": row["created_at"],
        "snippet": snippet_html(row["snippet"]),
    }


@dataclass
class PostgresSearch:
    """`SearchIndex` on PostgreSQL (tables from 030_search.sql)."""

    pool: asyncpg.Pool
    candidates: int = field(default=CANDIDATES)

    async def save_parsed(self, events: Sequence[PostParsed]) -> None:
        """Upsert parsed posts in one statement (tombstones and newer renders win)."""
        await self.pool.execute(_SAVE_PARSED, *parsed_columns(newest_per_post(events)))

    async def save_deleted(self, events: Sequence[PostDeleted]) -> None:
        """Tombstone posts in one statement (the first delete of each post wins)."""
        first: dict[str, PostDeleted] = {}
        for event in sorted(events, key=lambda e: e.occurred_at):
            first.setdefault(event.payload.post_id, event)
        ids = list(first)
        authors = [e.payload.author_id for e in first.values()]
        times = [e.occurred_at for e in first.values()]
        await self.pool.execute(_SAVE_DELETED, ids, authors, times)

    async def save_profiles(self, changes: Sequence[ProfileChange]) -> None:
        """Apply profile changes, per field last-writer-wins, in one statement."""
        await self.pool.execute(_SAVE_PROFILES, merge_profiles(changes))

    async def save_suspended(self, user_ids: Sequence[str]) -> None:
        """Leave these accounts out of user search (a row made now keeps the flag when the profile arrives)."""
        sql = """INSERT INTO search_users (user_id, suspended) SELECT unnest($1::text[]), true
                 ON CONFLICT (user_id) DO UPDATE SET suspended = true"""
        await self.pool.execute(sql, sorted(set(user_ids)))

    async def search_posts(
        self,
        query: ParsedQuery,
        *,
        offset: int,
        limit: int,
        ref: datetime,
        ceiling: str | None,
        hidden: Sequence[str] = (),
    ) -> PostHits:
        """One page of posts matching `query`, best first (see the module docstring for the ranking), without the
        posts of the `hidden` authors."""
        if query.empty:
            return PostHits([], False, None)
        groups, texts, negated = query.arrays()
        args = (list(query.tags), list(query.authors), ceiling, ref, offset, limit, self.candidates, list(hidden))
        rows = await self.pool.fetch(SEARCH_POSTS, groups, texts, negated, *args)
        found = rows[0]["found"] if rows else 0  # every row carries the candidate count
        more = offset + limit < found
        top = rows[0]["ceiling"] if rows else ceiling
        older = None
        if rows and not more and found >= self.candidates:  # the ranking held the newest matches only
            older = (rows[0]["floor_at"], rows[0]["floor_id"])
        return PostHits([_post_json(r) for r in rows], more, ceiling or top, older)

    async def search_older(
        self, query: ParsedQuery, *, before: tuple[datetime, str], limit: int, hidden: Sequence[str] = ()
    ) -> PostHits:
        """The matches older than the ranked candidates (`before`, from `PostHits.older`), newest first, without the
        posts of the `hidden` authors."""
        if query.empty:
            return PostHits([], False, None)
        groups, texts, negated = query.arrays()
        authors = list(query.authors)
        rows = await self.pool.fetch(SEARCH_OLDER, groups, texts, negated, authors, *before, limit + 1, list(hidden))
        page = rows[:limit]
        more = len(rows) > limit
        return PostHits(
            [_post_json(r) for r in page], more, None, (page[-1]["created_at"], page[-1]["post_id"]) if more else None
        )

    async def search_users(
        self, query: ParsedQuery, *, offset: int, limit: int, hidden: Sequence[str] = ()
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page of users whose handle or name matches, exact handle first, except the `hidden`; (items, more)."""
        words = user_words(query)
        if not words:
            return [], False
        rows = await self.pool.fetch(SEARCH_USERS, words, like_pattern(words), offset, limit + 1, list(hidden))
        return [dict(r) for r in rows[:limit]], len(rows) > limit

    async def tag_stats(self, tag: str) -> TagStats | None:
        """Live posts carrying `tag` (a tag key) and when it was first and last used; None when none."""
        row = await self.pool.fetchrow(_TAG_STATS, tag)
        if row is None or not row["n"]:
            return None
        return TagStats(tag, row["n"], row["first"], row["last"])
