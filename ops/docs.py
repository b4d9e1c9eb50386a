"""Generated API documents: AsyncAPI for every topic and event (from FastStream), OpenAPI for every HTTP route.

AsyncAPI: a broker that is never started gets every consumer subscribed exactly as `chirp consume` does it
(consumers/runtime.py `subscribe`), and a publisher with the event model for every topic, so FastStream describes
channels, consumer groups and payload schemas. OpenAPI: built from the Starlette routes (paths, methods, path
parameters) and their endpoints' docstrings (first line: summary; the rest: description).
"""

from __future__ import annotations

import asyncio
import inspect
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel
from starlette.routing import BaseRoute
from starlette.schemas import SchemaGenerator

from chirp.settings import Settings
from consumers.runtime import Context, all_consumers, subscribe
from ops.dlq import DECISIONS_TOPIC
from producers.broker import make_broker
from schemas import topics
from schemas.events import BY_TOPIC

VERSION = "0.1.0"
DOCS_DIR = Path(__file__).resolve().parents[1] / "docs"


class DeadLetter(BaseModel):
    """The original record's value, unchanged; `dlq_*` headers say who failed it, why, and where it came from."""

    value: Any


class DlqDecision(BaseModel):
    """A decision on a dead letter, keyed by its id `<consumer>:<partition>:<offset>` (compacted topic)."""

    decision: str  # "retried" or "dropped"
    at: datetime
    note: str = ""
    consumer: str


def asyncapi_schema(settings: Settings | None = None) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of every topic, event and consumer group."""
    from faststream.specification import AsyncAPI

    settings = settings or Settings()
    broker = make_broker(settings)
    # Never started: the context is only read when batches arrive, so no client is opened to describe it.
    ctx = Context(settings=settings, pg=None, redis=None, publisher=None)  # type: ignore[arg-type]
    consumers = sorted(all_consumers(), key=lambda c: c.name)
    for consumer in consumers:
        subscribe(broker, consumer, ctx, asyncio.Event())
    for topic in topics.ALL:
        model = BY_TOPIC[topic.name]
        broker.publisher(
            topic.name,
            title=f"{topic.name}:publish",
            description=f"{model.__name__} events, keyed by payload.{topic.key}, {topic.partitions} partition(s).",
            schema=model,
        )
    for consumer in consumers:
        broker.publisher(
            consumer.dead_letter_topic.name,
            title=f"{consumer.dead_letter_topic.name}:publish",
            description=f"Events {consumer.name} could not handle (see `chirp dlq`).",
            schema=DeadLetter,
        )
    broker.publisher(
        DECISIONS_TOPIC, title=f"{DECISIONS_TOPIC}:publish", description=DlqDecision.__doc__, schema=DlqDecision
    )
    spec = AsyncAPI(
        broker,
        title="Chirp events",
        version=VERSION,
        description="Every Kafka topic of Chirp: who publishes, which consumer groups read, and each event's schema.",
    )
    return _typed_subscriptions(orjson.loads(spec.to_specification().to_json()))


def _typed_subscriptions(doc: dict[str, Any]) -> dict[str, Any]:
    """Point each consumer's received messages at its topic's event schema.

    The runtime's batch handler takes raw records (it decodes them itself), so FastStream sees no payload type.
    """
    messages = doc["components"]["messages"]
    for channel in doc["channels"].values():
        model = BY_TOPIC.get(channel.get("address", ""))
        for ref in channel.get("messages", {}).values():
            name = ref["$ref"].rsplit("/", 1)[-1]
            if model is not None and messages[name]["payload"] == {"$ref": "#/components/schemas/EmptyPayload"}:
                messages[name]["payload"] = {"$ref": f"#/components/schemas/{model.__name__}"}
    if "EmptyPayload" not in orjson.dumps(messages).decode():
        doc["components"]["schemas"].pop("EmptyPayload", None)
    return doc


_PARAM = re.compile(r"{([^}:]+)(?::[^}]+)?}")


def _endpoints(routes: list[BaseRoute]) -> list[tuple[str, str, Any]]:
    """(path, method, endpoint) of every HTTP route, mounts included (Starlette's own walk: HEAD folded into GET,
    routes with include_in_schema=False left out)."""
    return [(info.path, info.http_method.upper(), info.func) for info in SchemaGenerator({}).get_endpoints(routes)]


def _operation_id(method: str, path: str) -> str:
    words = re.sub(r"[^A-Za-z0-9]+", "_", _PARAM.sub(r"by_\1", path)).strip("_") or "root"
    return f"{method.lower()}_{words}"


def openapi_schema(routes: list[BaseRoute]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `routes` (summaries and descriptions from the endpoints' docstrings)."""
    paths: dict[str, dict[str, Any]] = {}
    for path, method, func in sorted(_endpoints(routes), key=lambda e: (e[0], e[1])):
        doc = inspect.getdoc(func) or ""
        summary, _, rest = doc.partition("\n")
        operation: dict[str, Any] = {
            "operationId": _operation_id(method, path),
            "summary": summary or func.__name__.replace("_", " "),
            "responses": {"default": {"description": "JSON, HTML or a redirect; errors as {error: {code, message}}"}},
        }
        if rest.strip():
            operation["description"] = rest.strip()
        params = _PARAM.findall(path)
        if params:
            operation["parameters"] = [
                {"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in params
            ]
        tag = path.strip("/").split("/")[1 if path.startswith("/api/") else 0] or "root"
        operation["tags"] = [tag]
        paths.setdefault(_PARAM.sub(r"{\1}", path), {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "Chirp HTTP API", "version": VERSION, "description": "The gateway's routes."},
        "paths": paths,
    }


def app_routes() -> list[BaseRoute]:
    """The gateway's routes as create_app assembles them (without starting the app)."""
    from gateway.app import routes

    return routes()


def write(out: Path = DOCS_DIR) -> list[Path]:
    """Write asyncapi.json and openapi.json under `out`; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, document in (("asyncapi.json", asyncapi_schema()), ("openapi.json", openapi_schema(app_routes()))):
        path = out / name
        path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
        written.append(path)
    return written
