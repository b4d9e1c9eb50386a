"""Domain errors and the one place they turn into HTTP: `{"error": {"code", "message", "field"?}}`.

An error that is the infrastructure's fault (Redis, PostgreSQL or Kafka down, full, busy, read-only, not
answering in time) is no bug of ours and no fault of the client: `unavailable()` turns it into 503 with
`Retry-After`, and gateway.middleware.PerRequest answers so for whatever raised it (an endpoint or the rate
limiter).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match

from chirp.logging import get_logger
from chirp.outages import outage_reason
from producers.broker import PublishFailed

log = get_logger("chirp.gateway")


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class ApiError(Exception):
    """An error with a status, a stable code, a message and, for bad input, the field at fault."""

    status = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.headers = headers
        self.details = details  # more members of the error object (e.g. `may_have_been_published`)


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


class RemovedByModerators(ApiError):
    """What a post's author gets for a post the operators took down (everyone else: 404)."""

    status, code = 410, "removed_by_moderators"


class TooManyRequests(ApiError):
    status, code = 429, "rate_limited"


class Unavailable(ApiError):
    status, code = 503, "unavailable"


def error_body(
    code: str, message: str, field: str | None = None, details: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if field:
        error["field"] = field
    error.update(details or {})
    return {"error": error}


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


class ErrorPage(Protocol):
    async def __call__(
        self,
        request: Request,
        status: int,
        title: str,
        message: str,
        headers: Mapping[str, str] | None,
        *,
        with_viewer: bool,
    ) -> Response: ...


Handler = Callable[[Request, Exception], Awaitable[Response]]


class ErrorHandlers:
    """The app's exception handlers: JSON for API clients, `page` (the site's error page) for browsers.

    The composition root (gateway/app.py) registers them, with the pages' renderer and security headers.
    """

    def __init__(self, page: ErrorPage, security_headers: Mapping[str, str]) -> None:
        self.page = page
        self.security_headers = dict(security_headers)

    def by_class(self) -> dict[Any, Handler]:
        return {ApiError: self.api_error, HTTPException: self.http_error, Exception: self.server_error}

    async def html_error(
        self,
        request: Request,
        status: int,
        message: str,
        headers: Mapping[str, str] | None = None,
        *,
        with_viewer: bool = True,
    ) -> Response:
        """An error page in the site layout."""
        title = _PAGE_TITLES.get(status, "Error")
        return await self.page(request, status, title, message, headers, with_viewer=with_viewer)

    async def api_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        if wants_html(request):
            message = _PAGE_MESSAGES.get(exc.status) if exc.status in (404, 429) else exc.message
            # An unavailable store may be what finds the viewer: a 503 page does without.
            unavailable = isinstance(exc, Unavailable)
            return await self.html_error(
                request, exc.status, message or exc.message, exc.headers, with_viewer=not unavailable
            )
        body = error_body(exc.code, exc.message, exc.field, exc.details)
        return JSONResponse(body, exc.status, headers=exc.headers)

    async def http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if wants_html(request):
            message = _PAGE_MESSAGES.get(exc.status_code, str(exc.detail))
            return await self.html_error(request, exc.status_code, message, _with_allow(request, exc))
        code = _HTTP_CODES.get(exc.status_code, "error")
        return JSONResponse(error_body(code, str(exc.detail)), exc.status_code, headers=_with_allow(request, exc))

    async def server_error(self, request: Request, exc: Exception) -> Response:
        log.exception("unhandled error", path=request.url.path)
        # This handler runs outside the middleware stack (Starlette's ServerErrorMiddleware), so it adds the
        # security headers itself.
        headers = self.security_headers
        if wants_html(request):
            return await self.html_error(request, 500, _PAGE_MESSAGES[500], headers, with_viewer=False)
        return JSONResponse(error_body("internal", "Something went wrong on our side."), 500, headers=headers)


def _with_allow(request: Request, exc: HTTPException) -> Mapping[str, str] | None:
    """A 405's `Allow` naming every method of every route at its path (Starlette names one route's)."""
    if exc.status_code != 405:
        return exc.headers
    methods: set[str] = set()
    for route in getattr(request.app, "routes", []):
        if route.matches(request.scope)[0] is not Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return {**(exc.headers or {}), "Allow": ", ".join(sorted(methods))} if methods else exc.headers


def _dependency_of(exc: BaseException) -> str | None:
    """Which store or broker `exc` says is unavailable (`redis`, `postgres`, `kafka`), or None for other errors.

    What counts as an outage is `chirp.outages`' rule, the one the consumers wait out."""
    if isinstance(exc, PublishFailed):
        return "kafka"
    if (reason := outage_reason(exc)) is None:
        return None
    dependency = reason.partition("_")[0]
    # A bare timeout or refused connection: whose client raised it.
    return dependency if dependency in ("redis", "postgres", "kafka") else _client_of(exc)


_CLIENTS = {"asyncpg": "postgres", "redis": "redis", "aiokafka": "kafka", "faststream": "kafka"}


def _client_of(exc: BaseException) -> str | None:
    """The dependency whose client library raised `exc` (the innermost frame of a known client), if any."""
    found = None
    tb = exc.__traceback__
    while tb is not None:
        package = str(tb.tb_frame.f_globals.get("__name__", "")).partition(".")[0]
        found = _CLIENTS.get(package, found)
        tb = tb.tb_next
    return found


def unavailable(exc: BaseException, retry_after_s: int = 5) -> Unavailable | None:
    """The 503 for an error that is the infrastructure's fault, or None when `exc` is something else."""
    dependency = _dependency_of(exc)
    if dependency is None:
        return None
    details: dict[str, Any] = {"dependency": dependency}
    message = "A service this request needs is unavailable; try again shortly."
    if isinstance(exc, PublishFailed):
        details["may_have_been_published"] = exc.may_have_been_published
        message = (
            "The event was sent but Kafka did not confirm it in time; it may still be published."
            if exc.may_have_been_published
            else "Kafka is unavailable; nothing was published."
        )
    return Unavailable(message, headers={"Retry-After": str(retry_after_s)}, details=details)
