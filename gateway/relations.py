"""What the viewer's mutes and blocks hide (the relations read model, store/relations.py), for every read path.

A read path gets the viewer's hidden users once per request (one Redis read; none for anonymous readers) and
filters its page in the same query that reads it, so a page stays one round trip to each store.
"""

from __future__ import annotations

from starlette.requests import Request

from gateway.auth.current import viewer
from gateway.errors import Forbidden
from gateway.state import state_of
from store.relations import RelationsReadModel


def relations(request: Request) -> RelationsReadModel:
    return state_of(request).relations


async def hidden_for_viewer(request: Request) -> list[str]:
    """The users whose posts the logged-in viewer does not see (muted, blocked, blocking them); [] if anonymous."""
    me = await viewer(request)
    return list(await relations(request).hidden(me.user_id)) if me else []


async def hidden_on_profile(request: Request, user_id: str) -> list[str]:
    """What the viewer does not see on `user_id`'s profile: the users hidden from them, except that user when only
    muted (a mute keeps someone out of your timeline, not out of their own profile when you visit it)."""
    hidden = await hidden_for_viewer(request)
    me = await viewer(request)
    if me is not None and user_id in hidden:
        state = await relations(request).state(me.user_id, user_id)
        if not state["blocked"] and not state["blocks_me"]:
            hidden.remove(user_id)
    return hidden


async def refuse_if_blocked(request: Request, owner_id: str, me_id: str, message: str) -> None:
    """403 when `owner_id` blocks the viewer `me_id`."""
    if owner_id != me_id and await relations(request).blocks(owner_id, me_id):
        raise Forbidden(message)
