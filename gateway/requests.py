"""Reading requests into pydantic models: a JSON object body (`body_as`) and the query string (`query_as`).

Every API route that takes a body takes `application/json` only (415 otherwise, before the body is read), so a
form post to the API is refused whatever else read the stream first. A body or query that does not fit its model
is a 422 naming the first field at fault.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError
from starlette.requests import Request

from domain.text import Handle
from gateway.errors import ApiError, InvalidInput, NotFound
from schemas.events import Id

MAX_BODY_BYTES = 64 * 1024
M = TypeVar("M", bound=BaseModel)


class PayloadTooLarge(ApiError):
    status, code = 413, "too_large"


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"


class RequestModel(BaseModel):
    """A request body or query: unknown fields are refused (a typo must not pass silently)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class QueryModel(BaseModel):
    """A query string: parameters it does not name are ignored (cache busters, tracking)."""

    model_config = ConfigDict(extra="ignore", frozen=True)


def _ascii_int(value: object) -> object:
    # int() would also take " 5", "+5", "1_0" and other scripts' digits.
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit()) or len(value) > 9:
            raise ValueError("must be an integer")
        return int(value)
    return value


def Limit(maximum: int) -> Any:
    """The page size type: ASCII digits, 1..maximum."""
    return Annotated[int, Field(ge=1, le=maximum), BeforeValidator(_ascii_int)]


# What each path parameter can be; anything else names nothing that exists (404). `gateway.openapi` publishes it.
PATH_TYPES: dict[str, Any] = {"post_id": Id, "handle": Handle, "tag": Annotated[str, StringConstraints(min_length=1)]}
_PATH_ADAPTERS = {name: TypeAdapter(kind) for name, kind in PATH_TYPES.items()}


def path_param(request: Request, name: str, not_found: str) -> str:
    """The path parameter `name`, or NotFound(`not_found`) when no such thing can exist (e.g. an id with a NUL)."""
    value = request.path_params[name]
    try:
        return str(_PATH_ADAPTERS[name].validate_python(value))
    except ValidationError:
        raise NotFound(not_found) from None


def is_json(content_type: str | None) -> bool:
    """`application/json`, parameters (`; charset=utf-8`) allowed."""
    return (content_type or "").split(";", 1)[0].strip().lower() == "application/json"


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object: 415 unless sent as application/json, 413 when too large, 422 (`body`) otherwise."""
    if not is_json(request.headers.get("content-type")):
        raise UnsupportedMediaType("Send the body as Content-Type: application/json.", field="Content-Type")
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"The body is over {MAX_BODY_BYTES} bytes.")
    try:
        data = orjson.loads(raw or b"null")
    except orjson.JSONDecodeError:
        raise InvalidInput("The body is not valid JSON.", field="body") from None
    if not isinstance(data, dict):
        raise InvalidInput("The body must be a JSON object.", field="body")
    return data


def validated(model: type[M], data: dict[str, Any]) -> M:
    """`data` as `model`; InvalidInput naming the first field at fault."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "body"  # a rule on the whole body names it
        raise InvalidInput(f"{field}: {first['msg'].removeprefix('Value error, ')}", field=field) from None


async def body_as(request: Request, model: type[M]) -> M:
    """The request's JSON body as `model`."""
    return validated(model, await json_body(request))


def query_as(request: Request, model: type[M]) -> M:
    """The query string as `model` (a repeated parameter counts once: its last value)."""
    return validated(model, dict(request.query_params))
