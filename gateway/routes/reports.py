"""Reports to the operators: `POST /api/reports` (a post or an account, rate limited) and the reporter's own list
with each outcome, `GET /api/me/reports`.

A report is an event (`report-filed`); the moderation consumer keeps them with the operators' decisions
(`chirp reports resolve`, `report-resolved`), so the reporter sees the outcome once it is decided.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from domain.text import Handle
from gateway.auth.current import require_viewer
from gateway.errors import InvalidInput, JSONResponse
from gateway.openapi import contract
from gateway.requests import RequestModel, body_as
from gateway.state import state_of
from schemas.events import Id, ReportFiled, ReportFiledData, ReportReason, new_id
from store.reports import Report


class NewReport(RequestModel):
    """`POST /api/reports`: exactly one of `post_id` and `handle`, a reason, and a comment for the operators."""

    post_id: Id | None = None
    handle: Handle | None = None
    reason: ReportReason
    comment: Annotated[str, StringConstraints(max_length=1000, pattern=r"^[^\x00]*$")] = ""


class ReportAccepted(BaseModel):
    id: str
    status: Literal["accepted"]


class ReportOut(BaseModel):
    """A report as its reporter sees it: what was reported and, once decided, the outcome."""

    id: str
    post_id: str | None
    handle: str
    reason: str
    comment: str
    filed_at: datetime
    status: Literal["open", "resolved"]
    outcome: Literal["takedown", "dismiss", "suspend"] | None = Field(None, description="The decision, once resolved")
    resolved_at: datetime | None = None


class ReportList(BaseModel):
    items: list[ReportOut]


def report_json(report: Report) -> dict[str, Any]:
    return {
        "id": report.id,
        "post_id": report.post_id,
        "handle": report.handle,
        "reason": report.reason,
        "comment": report.comment,
        "filed_at": report.filed_at,
        "status": report.status,
        "outcome": report.action,
        "resolved_at": report.resolved_at,
    }


async def _target(request: Request, report: NewReport) -> tuple[str | None, str]:
    """(post id, account id) reported; InvalidInput naming the field when it names nothing live."""
    if (report.post_id is None) == (report.handle is None):
        raise InvalidInput("Give exactly one of post_id and handle.", field="post_id")
    posts = state_of(request).posts
    if report.post_id is not None:
        post = await posts.get(report.post_id)
        if post is None:
            raise InvalidInput("The post reported does not exist.", field="post_id")
        return post.id, post.author_id
    user_id = await posts.user_id_of(report.handle or "")
    if user_id is None:
        raise InvalidInput("No such user.", field="handle")
    return None, user_id


@contract(ReportAccepted, status=202, body=NewReport, auth="required")
async def file_report(request: Request) -> Response:
    """`POST /api/reports {"post_id" | "handle", "reason", "comment"?}` → 202 `{"id", "status": "accepted"}`."""
    viewer = await require_viewer(request)
    report = await body_as(request, NewReport)
    post_id, user_id = await _target(request, report)
    data = ReportFiledData(
        report_id=new_id(),
        reporter_id=viewer.user_id,
        post_id=post_id,
        user_id=user_id,
        reason=report.reason,
        comment=report.comment,
    )
    await state_of(request).publisher.publish(ReportFiled(actor=viewer.user_id, payload=data))
    return JSONResponse({"id": data.report_id, "status": "accepted"}, 202)


@contract(ReportList, auth="required")
async def my_reports(request: Request) -> Response:
    """`GET /api/me/reports` → the viewer's reports, newest first, each with its outcome once decided."""
    viewer = await require_viewer(request)
    reports = await state_of(request).reports.by_reporter(viewer.user_id)
    return JSONResponse({"items": [report_json(r) for r in reports if r.filed_at is not None]})


routes = [
    Route("/api/reports", file_report, methods=["POST"]),
    Route("/api/me/reports", my_reports, methods=["GET"]),
]
