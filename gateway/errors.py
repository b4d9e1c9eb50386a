"""Domain errors and the one place they turn into HTTP: `{"error": {"code", "message", "field"?}}`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from chirp.logging import get_logger

log = get_logger("chirp.gateway")


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class ApiError(Exception):
    """An error with a status, a stable code, a message and, for bad input, the field at fault."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, field: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.headers = headers


class InvalidInput(ApiError):
    status, code = 422, "invalid"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class NotFound(ApiError):
    status, code = 404, "not_found"


class Conflict(ApiError):
    status, code = 409, "conflict"


class TooManyRequests(ApiError):
    status, code = 429, "rate_limited"


class Unavailable(ApiError):
    status, code = 503, "unavailable"


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if field:
        error["field"] = field
    return {"error": error}


def invalid_from(exc: ValidationError) -> InvalidInput:
    """The first pydantic error as an InvalidInput naming its field."""
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or None
    return InvalidInput(first["msg"], field=field)


_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed"}


# Browsers get the same errors as pages in the site's layout; API clients (and /api/* always) get JSON.
_PAGE_TITLES = {
    400: "That did not work",
    401: "Please log in",
    403: "Not allowed",
    404: "Page not found",
    405: "Not allowed",
    409: "That did not work",
    413: "Too large",
    422: "That did not work",
    429: "Slow down",
    500: "Something went wrong",
    503: "Temporarily unavailable",
}
_PAGE_MESSAGES = {
    404: "There is nothing here. The link may be broken, or the post or person may be gone.",
    429: "You are doing that too often. Wait a moment, then try again.",
    500: "Something went wrong on our side. Try again in a moment.",
}


def wants_html(request: Request) -> bool:
    """A browser asking for a page: `Accept` names text/html and the path is not under /api/."""
    return "text/html" in request.headers.get("accept", "") and not request.url.path.startswith("/api/")


async def html_error(
    request: Request, status: int, message: str, headers: Mapping[str, str] | None = None, *, with_viewer: bool = True
) -> Response:
    """An error page in the site layout (imported lazily: the pages import this module)."""
    from gateway.pages.errors import error_page

    return await error_page(
        request, status, _PAGE_TITLES.get(status, "Error"), message, headers, with_viewer=with_viewer
    )


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    if wants_html(request):
        message = _PAGE_MESSAGES.get(exc.status) if exc.status in (404, 429) else exc.message
        return await html_error(request, exc.status, message or exc.message, exc.headers)
    return JSONResponse(error_body(exc.code, exc.message, exc.field), exc.status, headers=exc.headers)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if wants_html(request):
        message = _PAGE_MESSAGES.get(exc.status_code, str(exc.detail))
        return await html_error(request, exc.status_code, message, exc.headers)
    code = _HTTP_CODES.get(exc.status_code, "error")
    return JSONResponse(error_body(code, str(exc.detail)), exc.status_code, headers=exc.headers)


async def server_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", path=request.url.path)
    # This handler runs outside the middleware stack (Starlette's ServerErrorMiddleware), so it adds the
    # security headers itself.
    from gateway.pages.security import HEADERS

    if wants_html(request):
        return await html_error(request, 500, _PAGE_MESSAGES[500], HEADERS, with_viewer=False)
    return JSONResponse(error_body("internal", "Something went wrong on our side."), 500, headers=HEADERS)


HANDLERS = {ApiError: api_error, HTTPException: http_error, Exception: server_error}
