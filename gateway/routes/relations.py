"""Mutes and blocks: `POST`/`DELETE /api/users/{handle}/mute|block` (202) and the viewer's lists, `GET
/api/me/mutes` and `/api/me/blocks` (pages of users, newest first).

Writes publish one event on the kind's topic (keyed by the acting user, so one user's mute and unmute of another
stay in order); the relations consumer applies them idempotently, so muting twice is one mute. A block also
publishes an unfollow each way, so the follows and their counts go through the users consumer as any unfollow
does, and a replay agrees.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from gateway.auth.current import require_viewer
from gateway.cursors import PageQuery
from gateway.errors import InvalidInput, JSONResponse
from gateway.openapi import contract
from gateway.relations import relations
from gateway.routes import resource
from gateway.routes.interactions import KEYSET, UserPage
from gateway.routes.users import ACCEPTED, Accepted, user_id_of_path
from gateway.state import state_of
from schemas.events import Event, FollowData, RelationData, UserBlock, UserMute, UserUnfollowed
from store.relations import Kind

Endpoint = Callable[[Request], Awaitable[Response]]
# kind in the URL -> (event model, type when done, type when undone)
KINDS: dict[Kind, tuple[type[UserMute | UserBlock], str, str]] = {
    "mute": (UserMute, "user-muted", "user-unmuted"),
    "block": (UserBlock, "user-blocked", "user-unblocked"),
}


def _writer(kind: Kind, undo: bool) -> Endpoint:
    model, done, undone = KINDS[kind]
    name = undone if undo else done

    @contract(Accepted, status=202, auth="required", errors=(404,))
    async def write(request: Request) -> Response:
        me = await require_viewer(request)
        target = await user_id_of_path(request)
        if target == me.user_id:
            raise InvalidInput(f"You cannot {kind} yourself.", field="handle")
        data = RelationData(user_id=me.user_id, target_id=target)
        events: list[Event] = [model.model_validate({"type": name, "actor": me.user_id, "payload": data})]
        if kind == "block" and not undo:
            for follower, followee in ((me.user_id, target), (target, me.user_id)):
                pair = FollowData(follower_id=follower, followee_id=followee)
                events.append(UserUnfollowed(actor=me.user_id, payload=pair))
        for event in events:
            await state_of(request).publisher.publish(event)
        return JSONResponse(ACCEPTED, 202)

    write.__name__ = name.replace("-", "_")
    write.__doc__ = f"`{'DELETE' if undo else 'POST'} /api/users/{{handle}}/{kind}` → 202 once Kafka has `{name}`."
    return write


async def related_page(request: Request, kind: Kind, user_id: str) -> dict[str, object]:
    """One page of whom `user_id` mutes / blocks, as the API serves it (the settings pages render it too)."""
    cursor, limit = KEYSET.page(request)
    page = await relations(request).page(kind, user_id, cursor, limit)
    rows = await state_of(request).users.cards(page.user_ids)
    items = [
        {"handle": r["handle"], "display_name": r["display_name"] or "", "avatar_url": r["avatar_url"] or ""}
        for r in (rows.get(u) for u in page.user_ids)
        if r is not None and not r["handle"].startswith("~")
    ]
    return {"items": items, "next_cursor": KEYSET.encode(page.after) if page.after else None}


def _lister(kind: Kind) -> Endpoint:
    @contract(UserPage, query=PageQuery, auth="required")
    async def lister(request: Request) -> Response:
        me = await require_viewer(request)
        return JSONResponse(await related_page(request, kind, me.user_id))

    lister.__name__ = f"my_{kind}s"
    lister.__doc__ = f"`GET /api/me/{kind}s?cursor&limit` → whom the viewer {kind}s, newest first; 401 anonymous."
    return lister


routes = [
    *(
        resource(f"/api/users/{{handle}}/{kind}", post=_writer(kind, undo=False), delete=_writer(kind, undo=True))
        for kind in KINDS
    ),
    *(resource(f"/api/me/{kind}s", get=_lister(kind)) for kind in KINDS),
]
