"""The home timeline: `GET /api/timeline?cursor&limit`, the viewer's posts and their followees', newest first.

Warm path: one Redis script (a page of members after the cursor: posts, and reposts by small accounts fanned out,
each post once at its newest member; plus the followed big accounts; all without the authors and reposters the
viewer mutes, blocks or is blocked by), sent in the same round trip as the session check, then the posts by id.
Posts, reposters' names, counts and the viewer's flags are cached briefly in the process (CachedPosts,
gateway/interaction_cache.py), so a page read again within seconds needs no SQL at all; the viewer's own likes and
reposts show as soon as they are applied. With big accounts followed, their newest posts and reposts are merged in
(SQL), and a post shows once, at its newest place among all of them: the newest repost of the page's posts by the
big accounts (SQL) and in the timeline (Redis) are looked up, so a post shown at a newer place on an earlier page is
not shown again.
Cold path (no built timeline in Redis): the page is served from SQL with `"partial": true` (reposts of everyone
followed merged in) while the timeline is rebuilt in the background.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import Field
from redis.asyncio.client import Pipeline
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from ulid import ULID

from chirp.logging import get_logger
from gateway.auth.current import require_viewer, require_viewer_with
from gateway.cursors import PageQuery, post_cursor, post_page_params
from gateway.errors import InvalidInput, JSONResponse
from gateway.interactions import cursor_time, with_interactions, with_reposts
from gateway.openapi import contract
from gateway.post_objects import PostPage, cached_post_json
from gateway.state import State, state_of
from store.posts import PostView
from store.relations import hidden_keys
from store.timelines import Window, followees_of, rebuild, repost_key, window_of

log = get_logger("chirp.gateway")


class Timeline(PostPage):
    partial: bool = Field(description="Served from SQL while the timeline is rebuilt: may lack the newest posts")


@contract(Timeline, query=PageQuery, auth="required")
async def timeline(request: Request) -> Response:
    """`GET /api/timeline`: `{items, next_cursor, partial}`."""
    try:
        cursor, limit = post_page_params(request)
    except InvalidInput:
        await require_viewer(request)  # an anonymous request is refused whatever its query
        raise
    state = state_of(request)
    timelines = state.timelines

    def window_for(pipe: Pipeline, user_id: str) -> None:
        timelines.queue_window(pipe, user_id, cursor, limit, hidden_keys(user_id))

    me, (found,) = await require_viewer_with(request, window_for, timelines.scripts)  # one round trip
    window = window_of(found)
    if window is None:
        _start_rebuild(state, me.user_id)
        source = state.timeline_posts.source
        hidden = await state.relations.hidden(me.user_id)
        followees = await followees_of(state.timelines, source, me.user_id)
        authors = [a for a in followees if a not in hidden] + [me.user_id]
        rows = await source.items([], authors, cursor, limit + 1)
        page, after = rows[:limit], rows[limit - 1].id if len(rows) > limit else None
        items, after = await with_reposts(
            request,
            page,
            after is not None,
            me.user_id,
            cursor,
            limit,
            cached_post_json,
            state.timeline_posts.by_ids,
            hidden=hidden,
        )
        for item in items:  # to the millisecond, as a warm page's (a repost's place in Redis)
            if (at := item.get("reposted_at")) is not None:
                item["reposted_at"] = ULID.from_str(repost_key(item["id"], at)).datetime
    else:
        hidden = await state.relations.hidden(me.user_id, window.hidden_version)  # held at that version: no I/O
        items, after = await _warm_page(state, me.user_id, window, cursor, limit, hidden)
    return JSONResponse(
        {
            "items": await with_interactions(request, items, cached=True),
            "next_cursor": post_cursor(after),
            "partial": window is None,
        }
    )


Candidate = tuple[str, PostView, dict[str, str] | None]  # (where it sorts, the post, who reposted it)


async def _warm_page(
    state: State, user_id: str, window: Window, cursor: str | None, limit: int, hidden: frozenset[str] | set[str]
) -> tuple[list[dict[str, Any]], str | None]:
    """The page after `cursor` from the Redis window, merged with the big accounts' posts and reposts; the next
    cursor. Each source is complete down to its (limit+1)th item: the page stops at the highest of those."""
    posts = state.timeline_posts
    entries, big = window.entries, window.big_authors
    reposters = sorted({e.reposter for e in entries if e.reposter})
    big_posts: list[PostView] = []
    merged: list[dict[str, Any]] = []
    if big:
        views, big_posts, merged, cards = await asyncio.gather(
            posts.by_ids(window.post_ids),
            posts.items([], big, cursor, limit + 1),
            state.interactions.reposts_by(big, cursor_time(cursor), limit + 1, sorted(hidden)),
            posts.cards(reposters),
        )
        merged = [r for r in merged if cursor is None or repost_key(r["post_id"], r["changed_at"]) < cursor]
    else:
        views = await posts.by_ids(window.post_ids)
        cards = await posts.cards(reposters) if reposters else {}
    found = {view.id: view for view in views}
    candidates: list[Candidate] = []
    for e in entries:
        view, card = found.get(e.post_id), cards.get(e.reposter) if e.reposter else None
        if view is not None and (e.reposter is None or card is not None):
            candidates.append((e.key, view, card))
    candidates += [(view.id, view, None) for view in big_posts]
    lowers = [e.key for e in entries[limit : limit + 1]] + [p.id for p in big_posts[limit : limit + 1]]
    if merged:
        lowers += [repost_key(r["post_id"], r["changed_at"]) for r in merged[limit : limit + 1]]
        originals = {view.id: view for view in await posts.by_ids([r["post_id"] for r in merged])}
        for r in merged:
            view = originals.get(r["post_id"])
            if view is not None and view.author_id not in hidden:
                card = {k: r[k] for k in ("handle", "display_name", "avatar_url")}
                candidates.append((repost_key(r["post_id"], r["changed_at"]), view, card))
    if big:
        candidates = await _newest_only(state, user_id, candidates, big)
    return cut_page(candidates, max(lowers, default=""), limit)


async def _newest_only(state: State, user_id: str, candidates: list[Candidate], big: list[str]) -> list[Candidate]:
    """The candidates at the newest place of their post: its newest repost by a big account followed (SQL) or in
    the timeline (Redis, which has already left out its own older members)."""
    ids = sorted({view.id for _, view, _ in candidates})
    by_big, in_timeline = await asyncio.gather(
        state.timeline_posts.source.newest_reposts(ids, big),
        state.timelines.newest_held(user_id, ids, hidden_keys(user_id)[0]),
    )
    return [c for c in candidates if c[0] >= max(by_big.get(c[1].id, ""), in_timeline.get(c[1].id, ""))]


def cut_page(candidates: list[Candidate], lower: str, limit: int) -> tuple[list[dict[str, Any]], str | None]:
    """The newest `limit` candidates at or above `lower`, each post once (at its newest), as post objects; then the
    next cursor (None when no source has more)."""
    candidates.sort(key=lambda c: c[0], reverse=True)
    page: list[dict[str, Any]] = []
    shown: set[str] = set()
    last, more = "", bool(lower)
    for key, view, card in candidates:
        if view.id in shown:
            continue
        if len(page) == limit or key < lower:
            more = True
            break
        shown.add(view.id)
        item = cached_post_json(view)  # shared: a repost is a new object built from it
        if card is not None:
            item = {**item, "reposted_by": card, "reposted_at": ULID.from_str(key).datetime}
        page.append(item)
        last = key
    if not more:
        return page, None
    return page, last or lower or None


def _start_rebuild(state: State, user_id: str) -> None:
    task = asyncio.create_task(_rebuild(state, user_id))
    state.background.add(task)
    task.add_done_callback(state.background.discard)


async def _rebuild(state: State, user_id: str) -> None:
    timelines = state.timelines
    if not await timelines.lock(user_id):
        return  # another request (or process) is rebuilding it
    try:
        await rebuild(timelines, state.timeline_posts.source, user_id, state.settings.fanout_max_followers)
    except Exception:
        log.exception("timeline rebuild failed; the next read retries", user_id=user_id)
    finally:
        await timelines.unlock(user_id)


routes = [Route("/api/timeline", timeline, methods=["GET"])]
