"""Reading request bodies: JSON objects only, with a clear 4xx otherwise."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from gateway.errors import ApiError, InvalidInput

MAX_BODY_BYTES = 64 * 1024


class PayloadTooLarge(ApiError):
    status, code = 413, "too_large"


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object; 422 (field `body`) when it is not one, 413 when it is too large."""
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
