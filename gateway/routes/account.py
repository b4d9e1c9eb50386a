"""Leaving for good: `DELETE /api/me` (account deletion) and `GET /api/me/export` (a copy of one's data).

The deletion publishes `account-deleted` and ends every session at once; the consumers take the account out of
every read model and the erasure consumer deletes its keys after `erasure_delay_s` (docs/erasure.md). The handle is
held back for `handle_quarantine_days`. The export is streamed from the read models, a page of rows at a time, so
memory stays bounded whatever the account's size.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from gateway.auth.current import Viewer, clear_session_cookies, require_viewer
from gateway.errors import InvalidInput, JSONResponse
from gateway.openapi import contract
from gateway.requests import RequestModel, body_as
from gateway.state import State, state_of
from schemas.events import AccountDeleted, AccountDeletedData, new_id
from store.posts import PostReadModel

EXPORT_PAGE = 500  # rows fetched per round trip while exporting


class DeleteAccount(RequestModel):
    """`DELETE /api/me`: the viewer's handle, typed again to confirm."""

    confirm: str = Field(min_length=1, max_length=64)


class Export(BaseModel):
    """`GET /api/me/export`: everything of the viewer's that Chirp keeps, from the read models."""

    profile: dict[str, Any]
    posts: list[dict[str, Any]] = Field(description="Each with its Markdown (`markdown`), reply_to and quote_of")
    likes: list[dict[str, Any]]
    reposts: list[dict[str, Any]]
    bookmarks: list[dict[str, Any]]
    following: list[dict[str, Any]]
    followers: list[dict[str, Any]]
    exported_at: str


class Deleting(BaseModel):
    status: str
    erasure_delay_s: float


def handle_digest(handle: str) -> str:
    return hashlib.sha256(handle.lower().encode()).hexdigest()


async def quarantined(pg: asyncpg.Pool, handle: str) -> bool:
    """Whether `handle` belonged to an account deleted less than `handle_quarantine_days` ago."""
    return bool(
        await pg.fetchval(
            "SELECT 1 FROM handle_quarantine WHERE handle_sha256 = $1 AND until > now()", handle_digest(handle)
        )
    )


async def user_id_for(pg: asyncpg.Pool, kind: str, login_id: str) -> str:
    """The opaque user id of a login (`github`: the GitHub id; `dev`: the lower-cased dev login), made on first use.
    Ids reveal nothing about the person; the mapping is deleted with the account."""
    return str(
        await pg.fetchval(
            """WITH made AS (
                   INSERT INTO login_accounts (login_kind, login_id, user_id) VALUES ($1, $2, $3)
                   ON CONFLICT (login_kind, login_id) DO NOTHING RETURNING user_id)
               SELECT user_id FROM made
               UNION ALL SELECT user_id FROM login_accounts WHERE login_kind = $1 AND login_id = $2
               LIMIT 1""",
            kind,
            login_id,
            new_id(),
        )
    )


async def delete_account(state: State, me: Viewer) -> None:
    """Hold the handle back, forget the login, publish the deletion, end every session."""
    until = datetime.now(UTC) + timedelta(days=state.settings.handle_quarantine_days)
    async with state.pg.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO handle_quarantine (handle_sha256, until) VALUES ($1, $2)"
            " ON CONFLICT (handle_sha256) DO UPDATE SET until = EXCLUDED.until",
            handle_digest(me.handle),
            until,
        )
        await conn.execute("DELETE FROM login_accounts WHERE user_id = $1", me.user_id)
    await state.publisher.publish(AccountDeleted(actor=me.user_id, payload=AccountDeletedData(user_id=me.user_id)))
    await state.sessions.revoke_user(me.user_id, me.session_id)


@contract(Deleting, status=202, body=DeleteAccount, auth="required")
async def delete_me(request: Request) -> Response:
    """`DELETE /api/me {"confirm": "<your handle>"}`: delete the account; 202, and every session ends."""
    me = await require_viewer(request)
    confirm = (await body_as(request, DeleteAccount)).confirm
    if confirm.strip().lower() != me.handle.lower():
        raise InvalidInput("Type your handle to confirm the deletion.", field="confirm")
    state = state_of(request)
    await delete_account(state, me)
    response = JSONResponse({"status": "deleting", "erasure_delay_s": state.settings.erasure_delay_s}, 202)
    clear_session_cookies(response)
    return response


# Export -----------------------------------------------------------------------------------------------------

# After the posts (read through the posts read model, on whichever store holds it), the user's rows in SQL.
_SECTIONS: tuple[tuple[str, str], ...] = (
    *(
        (
            name,
            "SELECT post_id, changed_at AS at FROM interactions"
            f" WHERE user_id = $1 AND kind = '{kind}' AND active ORDER BY changed_at",
        )
        for name, kind in (("likes", "like"), ("reposts", "repost"), ("bookmarks", "bookmark"))
    ),
    (
        "following",
        "SELECT f.followee_id AS user_id, u.handle, f.changed_at AS since FROM follows f"
        " LEFT JOIN users u ON u.user_id = f.followee_id WHERE f.follower_id = $1 AND f.active ORDER BY f.changed_at",
    ),
    (
        "followers",
        "SELECT f.follower_id AS user_id, u.handle, f.changed_at AS since FROM follows f"
        " LEFT JOIN users u ON u.user_id = f.follower_id WHERE f.followee_id = $1 AND f.active ORDER BY f.changed_at",
    ),
)


def _json(value: Any) -> bytes:
    return orjson.dumps(value, default=str)


async def _own_posts(pg: asyncpg.Pool, posts: PostReadModel, user_id: str) -> AsyncIterator[bytes]:
    """The user's live posts, oldest first, `EXPORT_PAGE` at a time: `{post_id, markdown, reply_to, quote_of,
    created_at}` each."""
    ids = await posts.ids_by_author(user_id)
    for start in range(0, len(ids), EXPORT_PAGE):
        chunk = ids[start : start + EXPORT_PAGE]
        views = sorted(await posts.many(chunk), key=lambda p: (p.created_at, p.id))
        quoted = await pg.fetch("SELECT post_id, quote_of FROM quotes WHERE post_id = ANY($1::text[])", chunk)
        quote_of = {r["post_id"]: r["quote_of"] for r in quoted}
        rows = [
            {"post_id": p.id, "markdown": p.body, "reply_to": p.reply_to, "quote_of": quote_of.get(p.id),
             "created_at": p.created_at}
            for p in views
        ]  # fmt: skip
        if rows:
            yield (b"," if start else b"") + b",".join(_json(r) for r in rows)


async def export_document(pg: asyncpg.Pool, posts: PostReadModel, user_id: str) -> AsyncIterator[bytes]:
    """One JSON document, `{"profile": {...}, "posts": [...], ...}`, in chunks of at most `EXPORT_PAGE` rows."""
    profile = await pg.fetchrow(
        "SELECT user_id, handle, display_name, bio, avatar_url, joined_at FROM users WHERE user_id = $1", user_id
    )
    yield b'{"profile":' + _json(dict(profile) if profile else {"user_id": user_id})
    yield b',"posts":['
    async for chunk in _own_posts(pg, posts, user_id):
        yield chunk
    yield b"]"
    async with pg.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        for name, sql in _SECTIONS:
            yield b',"' + name.encode() + b'":['
            first = True
            cursor = await conn.cursor(sql, user_id)
            while rows := await cursor.fetch(EXPORT_PAGE):
                chunk = b",".join(_json(dict(r)) for r in rows)
                yield chunk if first else b"," + chunk
                first = False
            yield b"]"
    yield b',"exported_at":' + _json(datetime.now(UTC).isoformat()) + b"}"


@contract(Export, auth="required")
async def export(request: Request) -> Response:
    """`GET /api/me/export`: the viewer's profile, posts (Markdown), likes, reposts, bookmarks, follows and
    followers as one JSON document, streamed."""
    me = await require_viewer(request)
    stamp = datetime.now(UTC).strftime("%Y%m%d")
    headers = {
        "Content-Disposition": f'attachment; filename="chirp-{me.handle}-{stamp}.json"',
        "Cache-Control": "no-store",
    }
    state = state_of(request)
    return StreamingResponse(
        export_document(state.pg, state.posts, me.user_id), media_type="application/json", headers=headers
    )


routes = [Route("/api/me/export", export, methods=["GET"])]
