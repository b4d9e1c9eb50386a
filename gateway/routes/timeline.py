"""The home timeline: `GET /api/timeline?cursor&limit`, the viewer's posts and their followees', newest first.

Warm path: one Redis script (a page of post ids after the cursor, plus the followed big accounts, both without the
authors the viewer mutes, blocks or is blocked by), sent in the same round trip as the session check, and one SQL
query loading those posts by id merged with the big accounts' newest. Posts, their counts, the viewer's flags and
the reposts merged in are cached briefly in the process (CachedPosts, gateway/interaction_cache.py), so a page read
again within seconds needs no SQL at all; the viewer's own likes and reposts show as soon as they are applied.
Cold path (no built timeline in Redis): the page is served from SQL with `"partial": true` while the timeline is
rebuilt in the background.
"""

from __future__ import annotations

import asyncio

from pydantic import Field
from redis.asyncio.client import Pipeline
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from chirp.logging import get_logger
from gateway.auth.current import require_viewer, require_viewer_with
from gateway.cursors import PageQuery, post_cursor, post_page_params
from gateway.errors import InvalidInput, JSONResponse
from gateway.interactions import with_interactions, with_reposts
from gateway.openapi import contract
from gateway.post_objects import PostPage, cached_post_json
from gateway.state import State, state_of
from store.relations import hidden_keys
from store.timelines import followees_of, page_of, rebuild, window_of

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
    else:
        hidden = await state.relations.hidden(me.user_id, window.hidden_version)  # held at that version: no I/O
        rows = await state.timeline_posts.items(window.post_ids, window.big_authors, cursor, limit + 1)
        page, after = page_of(rows, window.post_ids, limit)
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
    return JSONResponse(
        {
            "items": await with_interactions(request, items, cached=True),
            "next_cursor": post_cursor(after),
            "partial": window is None,
        }
    )


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
