"""Profiles and follows: `/api/users/{handle}`, its followers and following, follow/unfollow, and `PATCH /api/me`.

Reads go to the users read model (store/users.py); commands publish an event and answer 202: the users consumer
applies them, idempotently, so following twice is one follow.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from domain import text
from domain.text import Bio, DisplayName, strip_lines
from gateway.auth.current import require_viewer, viewer
from gateway.cursors import CursorShape, Micros, PageQuery, from_micros, micros
from gateway.errors import InvalidInput, JSONResponse, NotFound
from gateway.openapi import contract
from gateway.relations import refuse_if_blocked, relations
from gateway.requests import RequestModel, json_body, validated
from gateway.routes import resource
from gateway.routes.account import delete_me
from gateway.state import state_of
from schemas.events import FollowData, Id, UserFollowed, UserProfileUpdated, UserProfileUpdatedData, UserUnfollowed
from store.reports import SUSPENDED_KEY
from store.users import FollowPage, UsersReadModel

EDITABLE = ("display_name", "bio")
ACCEPTED = {"status": "accepted"}


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


# The default of a field that may be left out but not sent as null (the schema shows no default).
_LEFT_OUT: Any = Field(default=None, json_schema_extra=_no_default)


class ProfileEdit(RequestModel):
    """`PATCH /api/me`: the fields to change, trimmed (line breaks unified first); absent ones stay as they are."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})  # something to change

    # Optional, not nullable: a field left out keeps its value, null is refused.
    display_name: Annotated[DisplayName, BeforeValidator(strip_lines)] = _LEFT_OUT
    bio: Annotated[Bio, BeforeValidator(strip_lines)] = _LEFT_OUT


def profile_edit(body: dict[str, Any]) -> dict[str, str]:
    """The fields a `PATCH /api/me` body changes, validated and trimmed; InvalidInput names the field at fault."""
    for name in body:
        if name not in EDITABLE:
            raise InvalidInput(f"{name} cannot be changed; only display_name and bio can.", field=name)
    edit = validated(ProfileEdit, body).model_dump(exclude_unset=True)
    if not edit:
        raise InvalidInput("Nothing to change: send display_name and/or bio.", field="body")
    return edit


class PublicProfile(BaseModel):
    handle: str
    display_name: str
    bio: str
    avatar_url: str
    joined_at: datetime
    followers_count: int
    following_count: int
    posts_count: int
    followed_by_me: bool
    muted_by_me: bool = Field(False, description="The viewer mutes this user")
    blocked_by_me: bool = Field(False, description="The viewer blocks this user")


class FollowUser(BaseModel):
    handle: str
    display_name: str
    avatar_url: str
    followers_count: int


class FollowList(BaseModel):
    items: list[FollowUser]
    next_cursor: str | None


class Accepted(BaseModel):
    """The command was acknowledged by Kafka; the read models apply it shortly."""

    status: Literal["accepted"]


class Me(BaseModel):
    user_id: str
    handle: str
    display_name: str
    bio: str
    avatar_url: str
    joined_at: datetime | None = None  # not yet in the users read model right after the first login


def _users(request: Request) -> UsersReadModel:
    return state_of(request).users


async def user_id_of_path(request: Request) -> str:
    """The id of the user `{handle}` names; 404 when there is none."""
    handle = request.path_params["handle"]
    found = await _users(request).user_id(handle) if text.is_handle(handle) else None
    if found is None or await _suspended(request, found):
        raise NotFound(f"No user @{handle}.")
    return found


async def _suspended(request: Request, user_id: str) -> bool:
    """Whether the operators suspended this account (it then shows nowhere)."""
    return bool(await state_of(request).redis.sismember(SUSPENDED_KEY, user_id))


@contract(PublicProfile, auth="optional", errors=(404,))
async def profile(request: Request) -> Response:
    """`GET /api/users/{handle}`: a public profile; `followed_by_me` for the logged-in viewer."""
    handle = request.path_params["handle"]
    me = await viewer(request)
    found = await _users(request).profile(handle, me.user_id if me else None) if text.is_handle(handle) else None
    if found is None or await _suspended(request, await _users(request).user_id(handle) or ""):
        raise NotFound(f"No user @{handle}.")
    user_id = found.pop("user_id")
    state = await relations(request).state(me.user_id, user_id) if me else {}
    return JSONResponse(
        {**found, "muted_by_me": state.get("muted", False), "blocked_by_me": state.get("blocked", False)}
    )


@contract(Me, auth="required")
async def me(request: Request) -> Response:
    """`GET /api/me`: the logged-in viewer's profile."""
    viewer = await require_viewer(request)
    row = await state_of(request).pg.fetchrow(
        "SELECT handle, display_name, bio, avatar_url, joined_at FROM users WHERE user_id = $1", viewer.user_id
    )
    profile = dict(row) if row else {"handle": viewer.handle, "display_name": "", "bio": "", "avatar_url": ""}
    return JSONResponse({"user_id": viewer.user_id, **profile})


@contract(Accepted, status=202, body=ProfileEdit, auth="required")
async def update_me(request: Request) -> Response:
    """`PATCH /api/me {display_name?, bio?}`: publishes user-profile-updated; 202."""
    me = await require_viewer(request)
    edit = profile_edit(await json_body(request))
    event = UserProfileUpdated(actor=me.user_id, payload=UserProfileUpdatedData(user_id=me.user_id, **edit))
    await state_of(request).publisher.publish(event)
    return JSONResponse(ACCEPTED, 202)


async def _follow_data(request: Request) -> FollowData:
    me = await require_viewer(request)
    target = await user_id_of_path(request)
    if target == me.user_id:
        raise InvalidInput("You cannot follow yourself.", field="handle")
    if request.method == "POST":
        await refuse_if_blocked(request, target, me.user_id, "This user blocks you.")
    return FollowData(follower_id=me.user_id, followee_id=target)


@contract(Accepted, status=202, auth="required", errors=(403, 404))
async def follow(request: Request) -> Response:
    """`POST /api/users/{handle}/follow`: publishes user-followed; 202."""
    data = await _follow_data(request)
    await state_of(request).publisher.publish(UserFollowed(actor=data.follower_id, payload=data))
    return JSONResponse(ACCEPTED, 202)


@contract(Accepted, status=202, auth="required", errors=(404,))
async def unfollow(request: Request) -> Response:
    """`DELETE /api/users/{handle}/follow`: publishes user-unfollowed; 202."""
    data = await _follow_data(request)
    await state_of(request).publisher.publish(UserUnfollowed(actor=data.follower_id, payload=data))
    return JSONResponse(ACCEPTED, 202)


# A follow list pages by (when the follow happened, the other user's id).
FOLLOW_CURSOR: CursorShape[tuple[int, str]] = CursorShape(tuple[Micros, Id])


def _follow_list(page: FollowPage) -> Response:
    items = [{k: row[k] for k in ("handle", "display_name", "avatar_url", "followers_count")} for row in page.rows]
    cursor = None
    if page.after:
        at, user_id = page.after
        cursor = FOLLOW_CURSOR.encode((micros(at), user_id))
    return JSONResponse({"items": items, "next_cursor": cursor})


def _after(key: tuple[int, str] | None) -> tuple[datetime, str] | None:
    return None if key is None else (from_micros(key[0]), key[1])


@contract(FollowList, query=PageQuery, errors=(404,))
async def followers(request: Request) -> Response:
    """`GET /api/users/{handle}/followers?cursor&limit`: newest follower first."""
    cursor, limit = FOLLOW_CURSOR.page(request)
    user_id = await user_id_of_path(request)
    return _follow_list(await _users(request).followers(user_id, _after(cursor), limit))


@contract(FollowList, query=PageQuery, errors=(404,))
async def following(request: Request) -> Response:
    """`GET /api/users/{handle}/following?cursor&limit`: newest followee first."""
    cursor, limit = FOLLOW_CURSOR.page(request)
    user_id = await user_id_of_path(request)
    return _follow_list(await _users(request).following(user_id, _after(cursor), limit))


routes = [
    resource("/api/me", get=me, patch=update_me, delete=delete_me),
    Route("/api/users/{handle}", profile, methods=["GET"]),
    resource("/api/users/{handle}/follow", post=follow, delete=unfollow),
    Route("/api/users/{handle}/followers", followers, methods=["GET"]),
    Route("/api/users/{handle}/following", following, methods=["GET"]),
]
