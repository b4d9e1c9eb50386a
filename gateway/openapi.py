"""The OpenAPI document of the HTTP API, generated from each endpoint's declared contract (pydantic models).

An endpoint declares its contract with `@contract(...)`: the query model, the body model, the 2xx response model
(or media type), the status, whether a viewer is required, and the error statuses it answers besides those every
operation may give. The query and body models are the ones the endpoint validates with (`gateway.requests`), so
the document cannot drift from the code. Routes without a contract are not part of the API document: the web UI's
pages, static files, and the browser redirects of the GitHub login and `/auth/resume`; a test checks every other
route under `/api/`, `/auth/` and `/.well-known/` has one.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import models_json_schema
from starlette.routing import BaseRoute
from starlette.schemas import SchemaGenerator

from gateway.requests import PATH_TYPES

VERSION = "0.1.0"
F = TypeVar("F", bound=Callable[..., Any])
Auth = Literal["public", "optional", "required"]


class Status(BaseModel):
    """A status report (`{"status": ...}` and details)."""

    status: str


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None  # the input at fault, for 4xx caused by a request's input


class ErrorBody(BaseModel):
    """Every error: `{"error": {"code", "message", "field"?}}`."""

    error: ErrorDetail


@dataclass(frozen=True)
class Contract:
    response: type[BaseModel] | None = None  # the JSON body of the success; None with `media_type` for others
    status: int = 200
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    auth: Auth = "public"
    errors: tuple[int, ...] = ()
    media_type: str = "application/json"
    redirect: bool = False  # the success is a redirect (`Location`), no body
    optional_body: bool = False  # the body may be left out (e.g. a token sent as a cookie instead)


def contract(
    response: type[BaseModel] | None = None,
    *,
    status: int = 200,
    query: type[BaseModel] | None = None,
    body: type[BaseModel] | None = None,
    auth: Auth = "public",
    errors: tuple[int, ...] = (),
    media_type: str = "application/json",
    redirect: bool = False,
    optional_body: bool = False,
) -> Callable[[F], F]:
    """Declare an endpoint's contract (read by `openapi_schema`; the endpoint itself is unchanged)."""
    declared = Contract(response, status, query, body, auth, errors, media_type, redirect, optional_body)

    def mark(fn: F) -> F:
        fn.__chirp_contract__ = declared  # type: ignore[attr-defined]
        return fn

    return mark


def contract_of(fn: Any) -> Contract | None:
    return getattr(fn, "__chirp_contract__", None)


# Statuses any operation may answer: a body over the limit, a client over its rate, an outage, a bug.
_ALWAYS = {
    413: "The body is too large.",
    429: "Too many requests; wait `Retry-After` seconds.",
    500: "An error on the server's side.",
    503: "A store or the broker is unavailable; try again after `Retry-After` seconds.",
}
_REASONS = {
    400: "Bad request.",
    401: "Not logged in, or the access token expired.",
    403: "Not allowed (for cookie sessions: the CSRF check failed).",
    404: "Not found.",
    409: "Conflict.",
    415: "The body is not sent as application/json.",
    422: "Invalid input; `field` names the input at fault.",
}
_SECURITY = {
    "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
    "cookie": {"type": "apiKey", "in": "cookie", "name": "chirp_access"},
}
_PARAM = re.compile(r"{([^}:]+)(?::[^}]+)?}")
_REF = "#/components/schemas/{model}"


def _operation_id(method: str, path: str) -> str:
    words = re.sub(r"[^A-Za-z0-9]+", "_", _PARAM.sub(r"by_\1", path)).strip("_") or "root"
    return f"{method.lower()}_{words}"


def _endpoints(routes: list[BaseRoute]) -> list[tuple[str, str, Any]]:
    """(path, method, endpoint) of every HTTP route (Starlette's own walk: HEAD folded into GET)."""
    return [(info.path, info.http_method.upper(), info.func) for info in SchemaGenerator({}).get_endpoints(routes)]


def _path_schema(name: str) -> dict[str, Any]:
    return TypeAdapter(PATH_TYPES.get(name, str)).json_schema()


def _error(description: str) -> dict[str, Any]:
    schema = {"$ref": _REF.format(model="ErrorBody")}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=_REF)
    required = set(schema.get("required", ()))
    params = []
    for name, prop in schema["properties"].items():
        prop = {k: v for k, v in prop.items() if k != "title"}
        description = prop.pop("description", None)
        param: dict[str, Any] = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if description:
            param["description"] = description
        params.append(param)
    return params


Refs = dict[Any, Any]  # (model, mode) -> its schema or reference


def _operation(method: str, path: str, fn: Any, declared: Contract, refs: Refs) -> dict[str, Any]:
    doc = inspect.getdoc(fn) or ""
    summary, _, rest = doc.partition("\n")
    operation: dict[str, Any] = {
        "operationId": _operation_id(method, path),
        "summary": summary or fn.__name__.replace("_", " "),
        "tags": [path.strip("/").split("/")[1 if path.startswith("/api/") else 0] or "root"],
    }
    if rest.strip():
        operation["description"] = rest.strip()
    params = [{"name": p, "in": "path", "required": True, "schema": _path_schema(p)} for p in _PARAM.findall(path)]
    if declared.query is not None:
        params += _query_parameters(declared.query)
    if params:
        operation["parameters"] = params
    if declared.body is not None:
        schema = refs[(declared.body, "validation")]
        content = {"application/json": {"schema": schema}}
        operation["requestBody"] = {"required": not declared.optional_body, "content": content}
    success: dict[str, Any] = {"description": "Success."}
    if declared.redirect:
        success["headers"] = {"Location": {"schema": {"type": "string"}, "description": "Where to go next."}}
    elif declared.response is not None:
        success["content"] = {"application/json": {"schema": refs[(declared.response, "serialization")]}}
    else:
        success["content"] = {declared.media_type: {"schema": {"type": "string"}}}
    responses: dict[str, Any] = {str(declared.status): success}
    implied = set(declared.errors)
    if declared.query is not None or declared.body is not None or _PARAM.search(path):
        implied.add(422)
    if declared.body is not None:
        implied.add(415)
    if declared.auth == "required":
        implied |= {401, 403}
        operation["security"] = [{"bearer": []}, {"cookie": []}]
    elif declared.auth == "optional":  # no credentials is fine; bad ones are refused
        implied.add(401)
        operation["security"] = [{}, {"bearer": []}, {"cookie": []}]
    else:
        operation["security"] = []
    for status in sorted(implied):
        responses[str(status)] = _error(_REASONS.get(status, "Error."))
    for status, description in _ALWAYS.items():
        responses.setdefault(str(status), _error(description))
    operation["responses"] = responses
    return operation


def openapi_schema(routes: list[BaseRoute]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the routes that declare a contract."""
    declared = [(path, method, fn, c) for path, method, fn in _endpoints(routes) if (c := contract_of(fn))]
    models: dict[tuple[type[BaseModel], Literal["validation", "serialization"]], None] = {
        (ErrorBody, "serialization"): None
    }
    for *_, c in declared:
        if c.body is not None:
            models[(c.body, "validation")] = None  # as validated: defaults optional, constraints kept
        if c.response is not None:
            models[(c.response, "serialization")] = None
    refs, schemas = models_json_schema(list(models), ref_template=_REF)
    paths: dict[str, dict[str, Any]] = {}
    for path, method, fn, c in sorted(declared, key=lambda d: (d[0], d[1])):
        paths.setdefault(_PARAM.sub(r"{\1}", path), {})[method.lower()] = _operation(method, path, fn, c, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Chirp HTTP API",
            "version": VERSION,
            "description": "The gateway's JSON API. Errors are `{error: {code, message, field?}}`.",
        },
        "paths": paths,
        "components": {"schemas": schemas.get("$defs", {}), "securitySchemes": _SECURITY},
    }
