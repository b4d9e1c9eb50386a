"""API documents: `/openapi.json` (HTTP routes), `/docs/asyncapi.json` (topics and events), `/docs` (a plain page)."""

from __future__ import annotations

from functools import cache
from html import escape
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from gateway.errors import JSONResponse
from gateway.state import state_of
from ops.docs import asyncapi_schema, openapi_schema


def _openapi(request: Request) -> dict[str, Any]:
    # Built from the running app's own routes, so it lists exactly what this process serves.
    found = getattr(request.app.state, "openapi", None)
    if found is None:
        found = request.app.state.openapi = openapi_schema(request.app.routes)
    return found


@cache
def _asyncapi() -> dict[str, Any]:
    return asyncapi_schema()


async def openapi_json(request: Request) -> Response:
    """The OpenAPI document of every HTTP route."""
    return JSONResponse(_openapi(request))


async def asyncapi_json(request: Request) -> Response:
    """The AsyncAPI document of every topic, event and consumer group."""
    state_of(request)  # the app is up: settings and clients exist
    return JSONResponse(_asyncapi())


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


async def docs_page(request: Request) -> Response:
    """A browsable list of the HTTP endpoints and Kafka topics (plain HTML, no scripts)."""
    body = _PAGE.format(endpoints=_rows(_openapi(request)), topics=_topic_rows(_asyncapi()))
    return HTMLResponse(body)


routes = [
    Route("/openapi.json", openapi_json, methods=["GET"]),
    Route("/docs/asyncapi.json", asyncapi_json, methods=["GET"]),
    Route("/docs", docs_page, methods=["GET"]),
]
