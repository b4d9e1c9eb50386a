"""Posts: write (`POST`, `PATCH`, `DELETE /api/posts[/{id}]`, 202 once Kafka acknowledged) and read (post, its
history, lists).

Writes publish `post-created` / `post-edited` (on the post-created topic, so an edit stays behind its post) /
`post-deleted`; the preparse and posts consumers make them visible. Reads go to
the posts read model (`store.posts.PostReadModel`); lists are keyset pages (`gateway.cursors`).

Read-your-writes: a client sending `Prefer: wait` (the web UI's forms do) gets its 202 once the post is visible
in the read model (so in every list it reads next), or after at most `MAX_WAIT_S`; `Preference-Applied: wait`
says it is visible (for a DELETE: gone). The request hears it from the posts consumer's announcement on Redis
pub/sub (`gateway.post_waits`: one subscription per process, no polling). Without the header the 202 comes right
after Kafka's ack and the post shows up once projected, for its author as for everyone else. (The alternative,
merging the author's pending posts into their lists, would touch every list query and its cursors.)

Idempotency: an `Idempotency-Key` maps, per user, to the post id and a hash of the request (Redis `SET NX`, 24 h);
a retry gets the same id, and publishes nothing once the first attempt's event was acknowledged (marked on the
key); the same key with a different post gets 409.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, BeforeValidator, TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from domain import text
from domain.text import MAX_TAG_CHARS, PostBody, Tag, unify_lines
from gateway.auth.current import Viewer, require_viewer, viewer
from gateway.cursors import PageQuery, post_cursor, post_page_params
from gateway.errors import Conflict, Forbidden, InvalidInput, JSONResponse, NotFound, RemovedByModerators
from gateway.interactions import post_with_interactions, with_interactions, with_reposts
from gateway.openapi import contract
from gateway.post_objects import Post, PostPage, post_json
from gateway.relations import hidden_for_viewer, hidden_on_profile, refuse_if_blocked
from gateway.requests import RequestModel, json_body, path_param, validated
from gateway.routes import resource
from gateway.state import State, state_of
from schemas.events import Id, PostCreated, PostCreatedData, PostDeleted, PostDeletedData, new_id
from store.posts import CHANNEL, DELETED_CHANNEL, EDITED_CHANNEL, Page, PostReadModel, PostView

MAX_WAIT_S = 1.0
IDEMPOTENCY_TTL_S = 24 * 3600
_TAG: TypeAdapter[str] = TypeAdapter(Tag)
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")  # printable ASCII, as Stripe and the IETF draft use


# Validation and JSON ------------------------------------------------------------------------------------------


class NewPost(RequestModel):
    """`POST /api/posts`: Markdown (line breaks counted as one character, as the form does) and a post replied to."""

    body: Annotated[PostBody, BeforeValidator(unify_lines)]
    reply_to: Id | None = None
    quote_of: Id | None = None  # the post this one quotes


class EditedPost(RequestModel):
    """`PATCH /api/posts/{id}`: the whole new Markdown, under the same rules as a new post's."""

    body: Annotated[PostBody, BeforeValidator(unify_lines)]


def validate_post(data: dict[str, Any]) -> tuple[str, str | None]:
    """(body, reply_to) of a `POST /api/posts` body, or InvalidInput naming the field at fault."""
    post = validated(NewPost, data)
    return post.body, post.reply_to


def tag_key(raw: str) -> str:
    """The key a hashtag is stored under (as the renderer writes it); InvalidInput for what no tag can be."""
    try:
        return _TAG.validate_python(text.tag_key(raw))
    except ValidationError:
        raise InvalidInput(f"A tag is 1 to {MAX_TAG_CHARS} characters, no NUL.", field="tag") from None


def wait_seconds(prefer: str | None) -> float:
    """How long the client asks us to wait for its write to be visible (`Prefer: wait[=N]`), capped; 0 if not."""
    for preference in (prefer or "").split(","):
        name, _, value = preference.split(";")[0].strip().partition("=")
        if name.strip().lower() == "wait":
            try:
                return max(0.0, min(MAX_WAIT_S, float(value.strip().strip('"')))) if value else MAX_WAIT_S
            except ValueError:
                return MAX_WAIT_S
    return 0.0


class PostVersion(BaseModel):
    body: str
    html: str
    at: datetime


class PostHistory(BaseModel):
    """Every version of a post, newest first (the first one is the post as created)."""

    items: list[PostVersion]


class PostAccepted(BaseModel):
    """The write was acknowledged by Kafka; `Location` names the post."""

    id: str
    status: Literal["accepted"]


async def page_json(request: Request, page: Page) -> JSONResponse:
    items = await with_interactions(request, [post_json(p) for p in page.items])
    return JSONResponse({"items": items, "next_cursor": post_cursor(page.last)})


# Writes -------------------------------------------------------------------------------------------------------


def _fingerprint(body: str, reply_to: str | None, quote_of: str | None) -> str:
    fields = [body, reply_to] if quote_of is None else [body, reply_to, quote_of]  # keys of plain posts unchanged
    return hashlib.sha256(orjson.dumps(fields)).hexdigest()[:32]


def _idempotency_key(viewer: Viewer, key: str) -> str:
    """The Redis key of a client's Idempotency-Key (per user); InvalidInput for keys we do not accept."""
    if not _IDEMPOTENCY_KEY.match(key):
        raise InvalidInput("Idempotency-Key: 1 to 255 printable ASCII characters.", field="Idempotency-Key")
    return f"chirp:idempotency:posts:{viewer.user_id}:{key}"


async def _claim(state: State, redis_key: str, post_id: str, fingerprint: str) -> tuple[str, bool]:
    """(post id bound to the key, whether its event was already published); binds `post_id` if the key is new."""
    previous = await state.redis.set(redis_key, f"{post_id} {fingerprint}", nx=True, get=True, ex=IDEMPOTENCY_TTL_S)
    if previous is None:
        return post_id, False
    earlier_id, earlier_fingerprint, *published = str(previous).split(" ")  # decode_responses: a str
    if earlier_fingerprint != fingerprint:
        raise Conflict("This Idempotency-Key was used for a different post.", field="Idempotency-Key")
    return earlier_id, bool(published)


def _accepted(post_id: str, visible: bool) -> JSONResponse:
    headers = {"Location": f"/api/posts/{post_id}"}
    if visible:
        headers["Preference-Applied"] = "wait"
    return JSONResponse({"id": post_id, "status": "accepted"}, 202, headers=headers)


async def _publish(
    state: State, viewer: Viewer, post_id: str, body: str, reply_to: str | None, quote_of: str | None
) -> None:
    # Publishing the same post id again (a retry after a failure we cannot tell from a lost answer) still makes
    # one post: every projection upserts by post id.
    event = PostCreatedData(post_id=post_id, author_id=viewer.user_id, body=body, reply_to=reply_to, quote_of=quote_of)
    await state.publisher.publish(PostCreated(actor=viewer.user_id, payload=event))


@contract(PostAccepted, status=202, body=NewPost, auth="required", errors=(403, 409))
async def create_post(request: Request) -> Response:
    """`POST /api/posts {"body", "reply_to"?, "quote_of"?}` → 202 `{"id", "status": "accepted"}` once Kafka has
    the event; a `quote_of` or `reply_to` naming no live post is 422, one whose author blocks the viewer 403."""
    viewer = await require_viewer(request)
    state = state_of(request)
    posts = state.posts
    data = await json_body(request)
    post = validated(NewPost, data)  # once: the body's rules are most of a post's validation
    body, reply_to, quote_of = post.body, post.reply_to, post.quote_of
    for field, target, what in (("reply_to", reply_to, "replied to"), ("quote_of", quote_of, "quoted")):
        if target is None:
            continue
        author = await posts.author_of(target)
        if author is None:
            raise InvalidInput(f"The post {what} does not exist.", field=field)
        await refuse_if_blocked(request, author, viewer.user_id, f"The author of the post {what} blocks you.")
    wait = wait_seconds(request.headers.get("prefer"))
    post_id, published, key, fingerprint = new_id(), False, request.headers.get("idempotency-key"), ""
    if key is not None:
        key, fingerprint = _idempotency_key(viewer, key), _fingerprint(body, reply_to, quote_of)
        post_id, published = await _claim(state, key, post_id, fingerprint)
        if published and (not wait or await posts.exists(post_id)):
            return _accepted(post_id, bool(wait))

    async def publish() -> None:
        if not published:
            await _publish(state, viewer, post_id, body, reply_to, quote_of)
            if key is not None:
                await state.redis.set(key, f"{post_id} {fingerprint} published", xx=True, keepttl=True)

    if not wait:  # no subscription to enter
        await publish()
        return _accepted(post_id, False)
    async with state.post_waits.expecting(CHANNEL, post_id, wait) as seen:
        await publish()
        visible = await seen(lambda: posts.exists(post_id))
    return _accepted(post_id, visible)


async def _own_post(request: Request, verb: str) -> tuple[Viewer, PostView]:
    """The viewer and the post at the path, which the viewer wrote: 404 when there is none, 403 for others."""
    viewer = await require_viewer(request)
    post = await state_of(request).posts.get(path_param(request, "post_id", "No such post."))
    if post is None:
        raise NotFound("No such post.")
    if post.author_id != viewer.user_id:
        raise Forbidden(f"Only its author can {verb} a post.")
    return viewer, post


@contract(PostAccepted, status=202, auth="required", errors=(404,))
async def delete_post(request: Request) -> Response:
    """`DELETE /api/posts/{id}` by its author → 202; the post then leaves every read model.

    A post not projected yet is not found (404) until it is: clients that delete what they just wrote send
    `Prefer: wait` with the POST.
    """
    viewer, post = await _own_post(request, "delete")
    state = state_of(request)
    posts = state.posts

    async def gone() -> bool:
        return not await posts.exists(post.id)

    wait = wait_seconds(request.headers.get("prefer"))
    async with state.post_waits.expecting(DELETED_CHANNEL, post.id, wait) as seen:
        event = PostDeleted(actor=viewer.user_id, payload=PostDeletedData(post_id=post.id, author_id=post.author_id))
        await state.publisher.publish(event)
        visible = await seen(gone)
    headers = {"Preference-Applied": "wait"} if visible else None
    return JSONResponse({"id": post.id, "status": "accepted"}, 202, headers=headers)


@contract(PostAccepted, status=202, body=EditedPost, auth="required", errors=(403, 404))
async def edit_post(request: Request) -> Response:
    """`PATCH /api/posts/{id} {"body"}` by its author → 202; the post then shows the new version, with `edited_at`,
    and `GET /api/posts/{id}/history` lists every version. Validated as a new post's body."""
    viewer, post = await _own_post(request, "edit")
    state = state_of(request)
    posts = state.posts
    body = validated(EditedPost, await json_body(request)).body
    quote_of = await state.interactions.quoted(post.id)
    event = PostCreated(
        type="post-edited",
        actor=viewer.user_id,
        payload=PostCreatedData(
            post_id=post.id,
            author_id=post.author_id,
            body=body,
            reply_to=post.reply_to,
            quote_of=quote_of,
            created_at=post.created_at,
        ),
    )

    async def shown() -> bool:
        now = await posts.get(post.id)
        return now is None or (now.edited_at is not None and now.edited_at >= event.occurred_at)

    wait = wait_seconds(request.headers.get("prefer"))
    async with state.post_waits.expecting(EDITED_CHANNEL, post.id, wait) as seen:
        await state.publisher.publish(event)
        visible = await seen(shown)
    return _accepted(post.id, visible)


# Reads --------------------------------------------------------------------------------------------------------


def _posts(request: Request) -> PostReadModel:
    return state_of(request).posts


@contract(Post, auth="optional", errors=(404, 410))
async def get_post(request: Request) -> Response:
    """`GET /api/posts/{id}` → the post, 404 when unknown or deleted; 410 ("removed by moderators") for the author of
    a post the operators took down, 404 for everyone else."""
    posts = _posts(request)
    post_id = path_param(request, "post_id", "No such post.")
    post, found = await post_with_interactions(request, post_id)
    if post is None:
        author = await posts.taken_down(post_id)
        if author is not None and (me := await viewer(request)) is not None and me.user_id == author:
            raise RemovedByModerators("This post was removed by moderators.")
        raise NotFound("No such post.")
    return JSONResponse({**post_json(post), **found})


@contract(PostHistory, errors=(404,))
async def post_history(request: Request) -> Response:
    """`GET /api/posts/{id}/history` → every version of the post (`body`, `html`, `at`), newest first; 404 when
    unknown or deleted."""
    versions = await _posts(request).history(path_param(request, "post_id", "No such post."))
    if not versions:
        raise NotFound("No such post.")
    return JSONResponse({"items": [{"body": v.body, "html": v.html, "at": v.at} for v in versions]})


@contract(PostPage, query=PageQuery)
async def list_posts(request: Request) -> Response:
    """`GET /api/posts?cursor&limit` → everyone's posts, newest first."""
    cursor, limit = post_page_params(request)
    hidden = await hidden_for_viewer(request)
    return await page_json(request, await _posts(request).latest(cursor, limit, hidden=hidden))


@contract(PostPage, query=PageQuery, errors=(404,))
async def list_replies(request: Request) -> Response:
    """`GET /api/posts/{id}/replies?cursor&limit` → replies, oldest first; 404 when the post is unknown."""
    cursor, limit = post_page_params(request)
    posts = _posts(request)
    post_id = path_param(request, "post_id", "No such post.")
    if not await posts.exists(post_id):
        raise NotFound("No such post.")
    hidden = await hidden_for_viewer(request)
    return await page_json(request, await posts.replies(post_id, cursor, limit, hidden=hidden))


@contract(PostPage, query=PageQuery, errors=(404,))
async def list_user_posts(request: Request) -> Response:
    """`GET /api/users/{handle}/posts?cursor&limit` → that user's posts and reposts, newest first; 404 for unknown
    users."""
    cursor, limit = post_page_params(request)
    posts = _posts(request)
    user_id = await posts.user_id_of(path_param(request, "handle", "No such user."))
    if user_id is None:
        raise NotFound("No such user.")
    hidden = await hidden_on_profile(request, user_id)
    page = await posts.by_author(user_id, cursor, limit, hidden=hidden)
    more = page.last is not None
    items, last = await with_reposts(request, page.items, more, [user_id], cursor, limit, post_json, hidden=hidden)
    return JSONResponse({"items": await with_interactions(request, items), "next_cursor": post_cursor(last)})


@contract(PostPage, query=PageQuery)
async def list_tag_posts(request: Request) -> Response:
    """`GET /api/tags/{tag}/posts?cursor&limit` → posts with that hashtag (any case, `#` optional), newest first."""
    cursor, limit = post_page_params(request)
    tag = tag_key(request.path_params["tag"])
    hidden = await hidden_for_viewer(request)
    return await page_json(request, await _posts(request).by_tag(tag, cursor, limit, hidden=hidden))


routes = [
    resource("/api/posts", get=list_posts, post=create_post),
    resource("/api/posts/{post_id}", get=get_post, delete=delete_post, patch=edit_post),
    Route("/api/posts/{post_id}/history", post_history, methods=["GET"]),
    Route("/api/posts/{post_id}/replies", list_replies, methods=["GET"]),
    Route("/api/users/{handle}/posts", list_user_posts, methods=["GET"]),
    Route("/api/tags/{tag}/posts", list_tag_posts, methods=["GET"]),
]
