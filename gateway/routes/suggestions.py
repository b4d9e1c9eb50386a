"""`GET /api/suggestions?limit`: whom the viewer might follow, read from the suggestions consumer's Redis model
(consumers/suggestions.py): the people the viewer's followees follow, most followed by them first, with up to
three of those followees (`followed_by`), never someone the viewer mutes, blocks or is blocked by. One script
(the ranking less the viewer's hidden set) and one pipeline, then one read of the users read model for names."""

from __future__ import annotations

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.auth.current import require_viewer
from gateway.errors import JSONResponse
from gateway.openapi import contract
from gateway.requests import Limit, QueryModel, query_as
from gateway.state import state_of
from store.relations import hidden_key
from store.suggestions import RANKED_VISIBLE, rank_key, via_key

SHOWN_VIA = 3


class SuggestionsQuery(QueryModel):
    limit: Limit(50) = 10  # type: ignore[valid-type]


class Suggestion(BaseModel):
    handle: str
    display_name: str
    avatar_url: str
    count: int = Field(description="How many of the people you follow follow them")
    followed_by: list[str] = Field(description="Up to three handles of people you follow who follow them")


class Suggestions(BaseModel):
    items: list[Suggestion]


@contract(Suggestions, query=SuggestionsQuery, auth="required")
async def suggestions(request: Request) -> Response:
    """People followed by the people you follow, ranked by how many of them follow each."""
    me = await require_viewer(request)
    limit = query_as(request, SuggestionsQuery).limit
    state = state_of(request)
    script = state.redis.register_script(RANKED_VISIBLE)
    flat = await script(keys=[rank_key(me.user_id), hidden_key(me.user_id)], args=[limit])
    ranked = [(str(flat[i]), float(flat[i + 1])) for i in range(0, len(flat), 2)]
    async with state.redis.pipeline(transaction=False) as pipe:
        for candidate, _ in ranked:
            pipe.srandmember(via_key(me.user_id, candidate), SHOWN_VIA)
        vias: list[list[str]] = await pipe.execute()
    ids = sorted({c for c, _ in ranked} | {v for via in vias for v in via})
    users = await state.users.cards(ids)
    items = []
    for (candidate, count), via in zip(ranked, vias, strict=True):
        user = users.get(candidate)
        if user is None or user["handle"].startswith("~"):
            continue  # not projected yet
        handles = sorted(users[v]["handle"] for v in via if v in users and not users[v]["handle"].startswith("~"))
        items.append(
            {
                "handle": user["handle"],
                "display_name": user["display_name"] or "",
                "avatar_url": user["avatar_url"] or "",
                "count": int(count),
                "followed_by": handles,
            }
        )
    return JSONResponse({"items": items})


routes = [Route("/api/suggestions", suggestions, methods=["GET"])]
