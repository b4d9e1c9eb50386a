"""API documents: `/openapi.json` (HTTP routes), `/docs/asyncapi.json` (topics and events), `/docs` (a plain page).

The OpenAPI document is built from this app's routes and their contracts (gateway/openapi.py). The AsyncAPI document
describes the consumers, which the gateway does not import: it serves the committed `docs/asyncapi.json` (written
by `chirp docs`; a test fails when it is stale).
"""

from __future__ import annotations

from functools import cache
from html import escape
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from gateway.errors import JSONResponse, NotFound
from gateway.openapi import contract, openapi_schema

ASYNCAPI_FILE = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.json"


class Document(BaseModel):
    """A JSON document (OpenAPI 3.1 or AsyncAPI 3.0)."""

    model_config = ConfigDict(extra="allow")


def _openapi(request: Request) -> dict[str, Any]:
    # Built from the running app's own routes, so it lists exactly what this process serves.
    found = getattr(request.app.state, "openapi", None)
    if found is None:
        found = request.app.state.openapi = openapi_schema(request.app.routes)
    return found


@cache
def _asyncapi() -> dict[str, Any]:
    try:
        return orjson.loads(ASYNCAPI_FILE.read_bytes())
    except FileNotFoundError:
        return {"channels": {}}


@contract(Document)
async def openapi_json(request: Request) -> Response:
    """The OpenAPI document of every HTTP route."""
    return JSONResponse(_openapi(request))


@contract(Document, errors=(404,))
async def asyncapi_json(request: Request) -> Response:
    """The AsyncAPI document of every topic, event and consumer group."""
    document = _asyncapi()
    if "asyncapi" not in document:
        raise NotFound("This installation has no AsyncAPI document (write it with `chirp docs`).")
    return JSONResponse(document)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Chirp API</title>
<link rel="stylesheet" href="/static/docs.css"></head>
<body><h1>Chirp API</h1>
<p>Machine-readable: <a href="/openapi.json">/openapi.json</a> (HTTP) and
<a href="/docs/asyncapi.json">/docs/asyncapi.json</a> (Kafka topics and events).</p>
<h2>HTTP endpoints</h2>
<table><thead><tr><th>method</th><th>path</th><th>what</th></tr></thead><tbody>
{endpoints}
</tbody></table>
<h2>Topics</h2>
<table><thead><tr><th>topic</th><th>what</th></tr></thead><tbody>
{topics}
</tbody></table>
</body></html>"""


def _rows(openapi: dict[str, Any]) -> str:
    rows = []
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            rows.append(
                f'<tr><td class="m">{escape(method)}</td><td><code>{escape(path)}</code></td>'
                f"<td>{escape(operation.get('summary', ''))}</td></tr>"
            )
    return "\n".join(rows)


def _topic_rows(asyncapi: dict[str, Any]) -> str:
    seen: dict[str, str] = {}
    # Publisher channels (`<topic>:publish`) describe the topic itself; consumer channels describe the consumer.
    channels = sorted(asyncapi["channels"].items(), key=lambda item: not item[0].endswith(":publish"))
    for _, channel in channels:
        address = channel.get("address", "")
        if channel.get("description") and address not in seen:
            seen[address] = channel["description"]
    return "\n".join(
        f"<tr><td><code>{escape(address)}</code></td><td>{escape(text)}</td></tr>"
        for address, text in sorted(seen.items())
    )


@contract(media_type="text/html")
async def docs_page(request: Request) -> Response:
    """A browsable list of the HTTP endpoints and Kafka topics (plain HTML, no scripts)."""
    body = _PAGE.format(endpoints=_rows(_openapi(request)), topics=_topic_rows(_asyncapi()))
    return HTMLResponse(body)


routes = [
    Route("/openapi.json", openapi_json, methods=["GET"]),
    Route("/docs/asyncapi.json", asyncapi_json, methods=["GET"]),
    Route("/docs", docs_page, methods=["GET"]),
]
