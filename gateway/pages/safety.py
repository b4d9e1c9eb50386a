"""Editing one's posts and reporting posts and people (forms that work without JavaScript).

`GET/POST /posts/{id}/edit` (the author's form, then back to the post saying so), `GET /posts/{id}/history` (every
version, newest first: where a post's "edited" marker leads), `GET/POST /posts/{id}/report` and
`GET/POST /@{handle}/report` (a reason and a comment for the operators). Each write runs the JSON API in-process
(`PATCH /api/posts/{id}`, `POST /api/reports`): same validation, events and rate limits; a refused input renders the
form again with the error next to the field and the text kept.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from domain.text import MAX_POST_CHARS
from gateway.auth.current import Viewer
from gateway.errors import Forbidden, InvalidInput, NotFound, TooManyRequests
from gateway.pages.actions import settle
from gateway.pages.flash import flash
from gateway.pages.internal import call_api
from gateway.pages.web import checked_form, field, local_path, login_redirect, page, page_route, page_viewer
from gateway.state import state_of

REASONS = (("spam", "Spam"), ("abuse", "Abuse or harassment"), ("illegal", "Illegal content"), ("other", "Other"))


async def _post(request: Request) -> dict[str, Any]:
    """The post the page is about, as the API shows it (NotFound when unknown or deleted)."""
    return dict((await call_api(request, "GET", f"/api/posts/{request.path_params['post_id']}")).data)


async def _own_post(request: Request, me: Viewer) -> dict[str, Any]:
    post = await _post(request)
    if post["author_id"] != me.user_id:
        raise Forbidden("Only its author can edit a post.")
    return post


def _edit_page(
    request: Request, me: Viewer, post: dict[str, Any], body: str, error: str = "", status: int = 200
) -> Response:
    return page(request, "edit_post.html", me, status, post=post, body=body, error=error, max_chars=MAX_POST_CHARS)


@page_route
async def edit_form(request: Request) -> Response:
    """`GET /posts/{post_id}/edit`: the author's form, filled in with the post's Markdown."""
    me = await page_viewer(request)
    if me is None:
        return login_redirect(request, f"/posts/{request.path_params['post_id']}/edit")
    post = await _own_post(request, me)
    return _edit_page(request, me, post, post["body"])


async def save_edit(request: Request) -> Response:
    """`POST /posts/{post_id}/edit` (body): publish the edit, wait for it to show, then the post (303)."""
    me = await page_viewer(request)
    if me is None:
        return login_redirect(request)
    form = await checked_form(request)
    post = await _own_post(request, me)
    body = field(form, "body")
    try:
        result = await call_api(
            request, "PATCH", f"/api/posts/{post['id']}", json={"body": body}, headers={"Prefer": "wait"}
        )
    except (InvalidInput, TooManyRequests) as exc:
        return _edit_page(request, me, post, body, exc.message, exc.status)
    if "preference-applied" not in result.response.headers:
        posts = state_of(request).posts

        async def shown() -> bool:
            now = await posts.get(post["id"])
            return now is None or now.body == body.strip() or now.edited_at is not None

        await settle(shown)
    response = RedirectResponse(f"/posts/{post['id']}", 303)
    flash(request, response, "edited")
    return response


@page_route
async def history(request: Request) -> Response:
    """`GET /posts/{post_id}/history`: every version of a post, newest first."""
    me = await page_viewer(request)
    post = await _post(request)
    versions = (await call_api(request, "GET", f"/api/posts/{post['id']}/history")).data["items"]
    return page(request, "history.html", me, post=post, versions=versions)


async def _report_target(request: Request) -> dict[str, Any]:
    """What a report form is about: `{"post_id"}` or `{"handle"}`, with a label, its page and the post shown."""
    if "post_id" in request.path_params:
        post = await _post(request)
        return {"post_id": post["id"], "label": "this post", "back": f"/posts/{post['id']}", "post": post}
    handle = request.path_params["handle"]
    if await state_of(request).posts.user_id_of(handle) is None:
        raise NotFound(f"No user @{handle}.")
    return {"handle": handle, "label": f"@{handle}", "back": f"/@{handle}", "post": None}


def _report_page(
    request: Request,
    me: Viewer,
    target: dict[str, Any],
    values: dict[str, str],
    errors: dict[str, str],
    status: int = 200,
) -> Response:
    return page(request, "report.html", me, status, target=target, values=values, errors=errors, reasons=REASONS)


@page_route
async def report_form(request: Request) -> Response:
    """`GET /posts/{post_id}/report`, `GET /@{handle}/report`: why, for the operators."""
    me = await page_viewer(request)
    if me is None:
        return login_redirect(request, request.url.path)
    target = await _report_target(request)
    return _report_page(request, me, target, {"reason": "", "comment": ""}, {})


async def send_report(request: Request) -> Response:
    """`POST /posts/{post_id}/report`, `POST /@{handle}/report` (reason, comment): file it, back to the page (303)."""
    me = await page_viewer(request)
    if me is None:
        return login_redirect(request)
    form = await checked_form(request)
    target = await _report_target(request)
    values = {"reason": field(form, "reason"), "comment": field(form, "comment")}
    about = {"post_id": target["post_id"]} if "post_id" in target else {"handle": target["handle"]}
    try:
        await call_api(request, "POST", "/api/reports", json={**about, **values})
    except (InvalidInput, TooManyRequests) as exc:
        errors = {exc.field if exc.field in values else "form": exc.message}
        return _report_page(request, me, target, values, errors, exc.status)
    response = RedirectResponse(local_path(field(form, "next"), target["back"]), 303)
    flash(request, response, "reported")
    return response


routes = [
    Route("/posts/{post_id}/edit", edit_form, methods=["GET"]),
    Route("/posts/{post_id}/edit", save_edit, methods=["POST"]),
    Route("/posts/{post_id}/history", history, methods=["GET"]),
    Route("/posts/{post_id}/report", report_form, methods=["GET"]),
    Route("/posts/{post_id}/report", send_report, methods=["POST"]),
    Route("/@{handle}/report", report_form, methods=["GET"]),
    Route("/@{handle}/report", send_report, methods=["POST"]),
]
