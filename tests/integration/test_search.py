"""Search on the real broker and store: the consumer indexes, `GET /api/search` and `/api/tags/{tag}` answer.

Events are published directly (post-parsed, post-deleted, user events) with unique words, tags and handles per test;
every consumer runs in the `pipeline` child process. A replay test runs the consumer's handlers in-process.
"""

from __future__ import annotations

import random
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis
from starlette.applications import Starlette

from chirp.settings import Settings
from consumers import search
from consumers.runtime import Context
from producers.broker import Publisher
from schemas import topics
from schemas.events import Event, UserProfileSynced, UserProfileSyncedData, UserProfileUpdated, UserProfileUpdatedData
from store.search import PostgresSearch
from store.search_query import parse_query
from tests.conftest import eventually
from tests.integration.explore_support import ago, caught_up, deleted, parsed, registered
from tests.integration.helpers import forge

Pipeline = subprocess.Popen[bytes]


def word() -> str:
    """A word no other test uses (letters only, so the English stemmer keeps it whole)."""
    return "zq" + "".join(random.choice("bcdfghjklmnpqrstvwxz") for _ in range(10))


async def indexed(pg: asyncpg.Pool, post_ids: list[str]) -> int:
    return await pg.fetchval(
        "SELECT count(*) FROM search_posts WHERE post_id = ANY($1) AND parsed_at IS NOT NULL", post_ids
    )


async def publish_and_wait(publisher: Publisher, pg: asyncpg.Pool, events: list[Event]) -> None:
    """Publish `events` and wait until every post and user among them is in the search tables."""
    await publisher.publish_many(events)
    posts = [e.payload.post_id for e in events if e.type == "post-parsed"]
    users = [e.payload.user_id for e in events if e.type == "user-registered"]
    await eventually(lambda: indexed(pg, posts), until=lambda n: n == len(posts), timeout=60)
    sql = "SELECT count(*) FROM search_users WHERE user_id = ANY($1) AND handle IS NOT NULL"
    await eventually(lambda: pg.fetchval(sql, users), until=lambda n: n == len(users), timeout=60)


async def ids(client: httpx.AsyncClient, q: str, **params: Any) -> list[str]:
    response = await client.get("/api/search", params={"q": q, **params})
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


async def pages(client: httpx.AsyncClient, q: str, limit: int = 2, most: int = 10) -> AsyncIterator[list[str]]:
    """The ids of each page of a post search, following `next_cursor` (at most `most` pages)."""
    cursor: str | None = None
    for _ in range(most):
        params = {"q": q, "limit": str(limit), **({"cursor": cursor} if cursor else {})}
        body = (await client.get("/api/search", params=params)).json()
        yield [item["id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return


async def test_all_words_and_recent_rank_above_an_old_partial_match(
    pipeline: Pipeline, publisher: Publisher, pg: asyncpg.Pool, client: httpx.AsyncClient
) -> None:
    user = registered("srch")
    a, b = word(), word()
    old_partial = parsed(user.payload.user_id, f"an old note about {a}", at=ago(days=30))
    recent_full = parsed(user.payload.user_id, f"fresh thoughts on {a} and {b}", at=ago(minutes=1))
    old_full = parsed(user.payload.user_id, f"older thoughts on {a} and {b}", at=ago(days=20))
    await publish_and_wait(publisher, pg, [user, old_partial, recent_full, old_full])

    assert await ids(client, f"{a} {b}") == [recent_full.payload.post_id, old_full.payload.post_id]
    assert await ids(client, f"{a} OR {b}") == [p.payload.post_id for p in (recent_full, old_full, old_partial)]
    assert (await ids(client, a))[0] == recent_full.payload.post_id


async def test_phrase_exclusion_or_and_from(
    pipeline: Pipeline, publisher: Publisher, pg: asyncpg.Pool, client: httpx.AsyncClient
) -> None:
    alice, bob = registered("alice"), registered("bob")
    w, x, y = word(), word(), word()
    p1 = parsed(alice.payload.user_id, f"{w} {x} together")
    p2 = parsed(alice.payload.user_id, f"{x} then {w} apart")
    p3 = parsed(bob.payload.user_id, f"{w} with {y}")
    await publish_and_wait(publisher, pg, [alice, bob, p1, p2, p3])

    assert await ids(client, f'"{w} {x}"') == [p1.payload.post_id]
    assert set(await ids(client, f"{w} -{x}")) == {p3.payload.post_id}
    assert set(await ids(client, f'{w} -"{w} {x}"')) == {p2.payload.post_id, p3.payload.post_id}
    assert set(await ids(client, f"{w} {x} OR {y}")) == {p.payload.post_id for p in (p1, p2, p3)}
    assert set(await ids(client, f"{w} from:@{bob.payload.handle}")) == {p3.payload.post_id}
    assert set(await ids(client, f"from:{alice.payload.handle}")) == {p1.payload.post_id, p2.payload.post_id}


async def test_a_reply_names_whom_it_replies_to(
    pipeline: Pipeline, publisher: Publisher, pg: asyncpg.Pool, client: httpx.AsyncClient
) -> None:
    alice, bob = registered("ralice"), registered("rbob")
    w = word()
    parent = parsed(alice.payload.user_id, f"{w} first")
    reply = parsed(bob.payload.user_id, f"{w} answer", reply_to=parent.payload.post_id)
    await publish_and_wait(publisher, pg, [alice, bob, parent, reply])
    items = (await client.get("/api/search", params={"q": w})).json()["items"]
    assert {i["id"]: i["reply_to_handle"] for i in items} == {
        reply.payload.post_id: alice.payload.handle,
        parent.payload.post_id: "",
    }
    page = await client.get("/explore", params={"q": w})
    assert f">@{alice.payload.handle}</a>" in page.text and "Replying to <a" in page.text


async def test_exact_hashtag_comes_first_and_snippet_is_escaped(
    pipeline: Pipeline, publisher: Publisher, pg: asyncpg.Pool, client: httpx.AsyncClient
) -> None:
    user = registered("tagger", display_name="Tag <Person>")
    tag = word()
    carrier = parsed(user.payload.user_id, f"about #{tag} <b>bold</b>", tags=(tag,), at=ago(days=3))
    mention = parsed(user.payload.user_id, f"{tag} {tag} {tag} said loudly, no tag", at=ago(seconds=5))
    await publish_and_wait(publisher, pg, [user, carrier, mention])

    response = await client.get("/api/search", params={"q": f"#{tag.upper()}"})
    items = response.json()["items"]
    assert [i["id"] for i in items] == [carrier.payload.post_id, mention.payload.post_id]
    first = items[0]
    assert first["author"] == {"handle": user.payload.handle, "display_name": "Tag <Person>", "avatar_url": ""}
    assert first["hashtags"] == [tag] and first["reply_count"] == 0 and first["html"] == carrier.payload.html
    assert f"<mark>{tag}</mark>" in first["snippet"] and "&lt;b&gt;bold&lt;/b&gt;" in first["snippet"]
    assert first["snippet"].replace("<mark>", "").replace("</mark>", "").count("<") == 0


async def test_deleted_posts_are_never_found(
    pipeline: Pipeline, settings: Settings, publisher: Publisher, pg: asyncpg.Pool, client: httpx.AsyncClient
) -> None:
    user = registered("del")
    w = word()
    gone, kept = parsed(user.payload.user_id, f"{w} soon gone", tags=(w,)), parsed(user.payload.user_id, f"{w} kept")
    await publish_and_wait(publisher, pg, [user, gone, kept])
    assert len(await ids(client, w)) == 2

    await publisher.publish(deleted(gone))
    await eventually(lambda: ids(client, w), until=lambda found: found == [kept.payload.post_id], timeout=60)
    assert (await client.get(f"/api/tags/{w}")).status_code == 404

    early = parsed(user.payload.user_id, f"{w} deleted before it was parsed")
    await publisher.publish(deleted(early))
    tombstone = "SELECT deleted_at IS NOT NULL FROM search_posts WHERE post_id = $1"
    await eventually(lambda: pg.fetchval(tombstone, early.payload.post_id), timeout=60)
    await publisher.publish(early)
    await caught_up(settings, settings.group("search"), [topics.POST_PARSED.name])
    assert await ids(client, w) == [kept.payload.post_id]


async def test_users_by_handle_and_name_and_profile_edits(
    pipeline: Pipeline, publisher: Publisher, pg: asyncpg.Pool, client: httpx.AsyncClient
) -> None:
    name = word()
    exact = registered("who", display_name="Somebody")
    similar = registered("who", display_name=f"{name} Fan")
    await publish_and_wait(publisher, pg, [exact, similar])
    exact_handle = exact.payload.handle
    response = await client.get("/api/search", params={"q": f"@{exact_handle}", "type": "users"})
    items = response.json()["items"]
    assert items[0] == {"handle": exact_handle, "display_name": "Somebody", "avatar_url": "", "followers_count": 0}
    response = await client.get("/api/search", params={"q": name, "type": "users"})
    assert [i["handle"] for i in response.json()["items"]] == [similar.payload.handle]

    renamed = word()
    update = UserProfileUpdated(payload=UserProfileUpdatedData(user_id=exact.payload.user_id, display_name=renamed))
    await publisher.publish(update)

    async def by_name(q: str) -> list[str]:
        found = await client.get("/api/search", params={"q": q, "type": "users"})
        return [i["handle"] for i in found.json()["items"]]

    await eventually(lambda: by_name(renamed), until=lambda found: found == [exact_handle], timeout=60)
    assert exact_handle not in await by_name("Somebody")


async def test_tag_stats_count_live_posts(
    pipeline: Pipeline, publisher: Publisher, pg: asyncpg.Pool, client: httpx.AsyncClient
) -> None:
    user = registered("stats")
    tag = word()
    posts = [parsed(user.payload.user_id, f"#{tag} {i}", tags=(tag,), at=ago(hours=3 - i)) for i in range(3)]
    await publish_and_wait(publisher, pg, [user, *posts])
    await publisher.publish(deleted(posts[2]))

    async def stats() -> dict[str, Any]:
        return (await client.get(f"/api/tags/%23{tag.upper()}")).json()

    body = await eventually(stats, until=lambda b: b.get("posts_count") == 2, timeout=60)
    assert body["tag"] == tag
    assert datetime.fromisoformat(body["first_used_at"]) == posts[0].payload.created_at
    assert datetime.fromisoformat(body["last_used_at"]) == posts[1].payload.created_at
    assert (await client.get(f"/api/tags/{word()}")).status_code == 404


async def test_posts_of_every_age_are_found_newest_first(
    pipeline: Pipeline, publisher: Publisher, pg: asyncpg.Pool, client: httpx.AsyncClient
) -> None:
    """Posts of minutes, hours, days and weeks ago, and one a little in the future."""
    user = registered("ages")
    w = word()
    ages = [{"minutes": -3}, {"hours": 1}, {"days": 1, "hours": 12}, {"days": 4}, {"days": 40}]
    posts = [parsed(user.payload.user_id, f"{w} aged", at=ago(**age)) for age in ages]
    await publish_and_wait(publisher, pg, [user, *posts])
    newest_first = [p.payload.post_id for p in posts]
    assert await ids(client, w) == newest_first

    # With fewer candidates than matches, the newest matches are the candidates.
    for keep, expected in ((3, newest_first[:3]), (4, newest_first[:4]), (9, newest_first)):
        index = PostgresSearch(pg, candidates=keep)
        hits = await index.search_posts(parse_query(w), offset=0, limit=20, ref=datetime.now(UTC), ceiling=None)
        assert [h["id"] for h in hits.items] == expected


async def test_pages_cover_every_match_once(
    pipeline: Pipeline, publisher: Publisher, pg: asyncpg.Pool, client: httpx.AsyncClient
) -> None:
    user = registered("pages")
    w = word()
    posts = [parsed(user.payload.user_id, f"{w} number {i}", at=ago(minutes=10 - i)) for i in range(5)]
    await publish_and_wait(publisher, pg, [user, *posts])
    seen: list[str] = []
    async for page in pages(client, w):
        seen += page
        newer = parsed(user.payload.user_id, f"{w} arriving while paging")  # must not shift the pages
        await publish_and_wait(publisher, pg, [newer])
    assert seen == [p.payload.post_id for p in reversed(posts)]
    # Eight matches now (three arrived), in pages of four: the second page is the last, with no cursor to an empty one.
    assert [len(page) async for page in pages(client, w, limit=4)] == [4, 4]


async def test_pages_go_on_past_the_ranked_candidates_to_every_older_match(
    pipeline: Pipeline,
    publisher: Publisher,
    pg: asyncpg.Pool,
    client: httpx.AsyncClient,
    app: Starlette,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With 3 candidates ranked, 8 matches: the ranked pages, then the older matches newest first, each once."""
    state = app.state.chirp
    monkeypatch.setattr(state, "search", PostgresSearch(state.search.pool, candidates=3))
    user = registered("older")
    w = word()
    posts = [parsed(user.payload.user_id, f"{w} number {i}", at=ago(hours=i)) for i in range(8)]
    same_time = parsed(user.payload.user_id, f"{w} at the same time as number 5", at=posts[5].payload.created_at)
    await publish_and_wait(publisher, pg, [user, *posts, same_time])
    expected = [p.payload.post_id for p in posts[:5]]
    expected += sorted([posts[5].payload.post_id, same_time.payload.post_id], reverse=True)
    expected += [p.payload.post_id for p in posts[6:]]

    for q in (w, f"from:@{user.payload.handle}"):
        assert [i async for page in pages(client, q) for i in page] == expected, q

    for bad in (["o", "x", "y"], ["o", 123, ""], [7, 123, ""], ["o", 2**60, "y"]):  # forged older cursors
        response = await client.get("/api/search", params={"q": w, "cursor": forge(bad)})
        assert response.status_code == 422 and response.json()["error"]["field"] == "cursor"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "q"),
        ({"q": "   "}, "q"),
        ({"q": "x" * 257}, "q"),
        ({"q": "a", "type": "tags"}, "type"),
        ({"q": "a", "limit": "0"}, "limit"),
        ({"q": "a", "cursor": "!!"}, "cursor"),
    ],
)
async def test_bad_input_is_422(client: httpx.AsyncClient, params: dict[str, str], field: str) -> None:
    response = await client.get("/api/search", params=params)
    assert response.status_code == 422
    assert response.json()["error"]["field"] == field


@pytest.mark.parametrize("q", ["the", "OR", '"', "-", "- OR -", "!!! ??? ...", "-cat", "from:@", "%_\\"])
@pytest.mark.parametrize("kind", ["posts", "users"])
async def test_nothing_searchable_is_an_empty_list(client: httpx.AsyncClient, q: str, kind: str) -> None:
    response = await client.get("/api/search", params={"q": q, "type": kind})
    assert response.status_code == 200, response.text
    assert response.json() == {"items": [], "next_cursor": None}


async def test_sql_in_a_query_is_just_text(client: httpx.AsyncClient, pg: asyncpg.Pool) -> None:
    for kind in ("posts", "users"):
        response = await client.get("/api/search", params={"q": "x'); DROP TABLE search_posts; --", "type": kind})
        assert response.status_code == 200
    assert await pg.fetchval("SELECT to_regclass('search_posts') IS NOT NULL")


async def rows(pg: asyncpg.Pool, post_ids: list[str], user_ids: list[str]) -> tuple[list[dict[str, Any]], ...]:
    posts = await pg.fetch("SELECT * FROM search_posts WHERE post_id = ANY($1) ORDER BY post_id", post_ids)
    users = await pg.fetch("SELECT * FROM search_users WHERE user_id = ANY($1) ORDER BY user_id", user_ids)
    return [dict(r) for r in posts], [dict(r) for r in users]


async def test_replay_and_reordering_leave_the_same_rows(
    settings: Settings, publisher: Publisher, pg: asyncpg.Pool
) -> None:
    """The handlers over the same events: twice, and in reverse order, give the rows of one pass in order."""
    ctx = Context(settings, pg, aioredis.Redis.from_url(settings.redis_url, decode_responses=True), publisher)
    user = registered("replay", display_name="First")
    rename = UserProfileUpdated(payload=UserProfileUpdatedData(user_id=user.payload.user_id, display_name="Second"))
    github = UserProfileSynced(  # a later login: GitHub's name does not replace the one the user chose
        payload=UserProfileSyncedData(user_id=user.payload.user_id, handle=user.payload.handle, display_name="GitHub")
    )
    live, gone = parsed(user.payload.user_id, f"{word()} stays"), parsed(user.payload.user_id, f"{word()} goes")
    reply = parsed(user.payload.user_id, "a reply", reply_to=live.payload.post_id)
    handlers = {
        "post-parsed": search.on_post_parsed,
        "post-deleted": search.on_post_deleted,
        "user-registered": search.on_user_registered,
        "user-profile-updated": search.on_user_profile_updated,
        "user-profile-synced": search.on_user_profile_synced,
    }
    events: list[Event] = [user, rename, live, gone, reply, deleted(gone), github]
    post_ids = [p.payload.post_id for p in (live, gone, reply)]

    async def apply(sequence: list[Event]) -> tuple[list[dict[str, Any]], ...]:
        for event in sequence:
            await handlers[event.type]([event], ctx)
        return await rows(pg, post_ids, [user.payload.user_id])

    once = await apply(events)
    assert await apply(events) == once
    assert [r["deleted_at"] is not None for r in once[0]] == [False, True, False]
    assert once[1][0]["display_name"] == "Second"

    await pg.execute("DELETE FROM search_posts WHERE post_id = ANY($1)", post_ids)
    await pg.execute("DELETE FROM search_users WHERE user_id = $1", user.payload.user_id)
    reordered = await apply(list(reversed(events)))
    assert reordered[1] == once[1]
    # Live posts are the same rows; the deleted one is a tombstone either way (its dates say which came first).
    assert [reordered[0][i] for i in (0, 2)] == [once[0][i] for i in (0, 2)]
    assert reordered[0][1]["deleted_at"] is not None and reordered[0][1]["text"] == ""
    await ctx.redis.aclose()


async def test_the_rum_migration_converts_a_day_lexeme_table_and_keeps_its_rows(pg: asyncpg.Pool) -> None:
    """A database migrated before the RUM index: 032 drops the day lexeme, swaps GIN for RUM, keeps every row."""
    from store.postgres import MIGRATIONS

    schema = "mig_" + word()
    async with pg.acquire() as conn:
        await conn.execute(f"CREATE SCHEMA {schema}; SET search_path = {schema}, public")
        try:
            await conn.execute(
                """CREATE TABLE search_posts (post_id text PRIMARY KEY, text text NOT NULL, created_at timestamptz
                       NOT NULL, deleted_at timestamptz,
                       doc tsvector GENERATED ALWAYS AS (to_tsvector('english'::regconfig, text) || array_to_tsvector(
                           ARRAY['~d' || floor(extract(epoch FROM created_at - timestamptz '1970-01-01 00:00:00+00')
                                 / 86400)::int::text])) STORED);
                   CREATE INDEX search_posts_doc ON search_posts USING gin (doc) WHERE deleted_at IS NULL;
                   INSERT INTO search_posts VALUES ('p1', 'Running foxes', now(), NULL)"""
            )
            await conn.execute((MIGRATIONS / "032_search_rum.sql").read_text())
            await conn.execute((MIGRATIONS / "032_search_rum.sql").read_text())  # a second run changes nothing
            doc = await conn.fetchval("SELECT doc::text FROM search_posts")
            method = await conn.fetchval(
                "SELECT a.amname FROM pg_class c JOIN pg_am a ON a.oid = c.relam"
                " WHERE c.oid = 'search_posts_doc'::regclass"
            )
            found = await conn.fetchval(
                "SELECT post_id FROM search_posts WHERE deleted_at IS NULL"
                " AND doc @@ to_tsquery('english', 'run & fox') ORDER BY created_at <=> now() LIMIT 1"
            )
        finally:
            await conn.execute(f"RESET search_path; DROP SCHEMA {schema} CASCADE")
    assert doc == "'fox':2 'run':1" and method == "rum" and found == "p1"
