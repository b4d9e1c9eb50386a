"""Generated API documents: AsyncAPI for every topic and event (from FastStream), OpenAPI for every HTTP route.

AsyncAPI: a broker that is never started gets every consumer subscribed exactly as `chirp consume` does it
(consumers/runtime.py `subscribe`), and a publisher with the event model for every topic, so FastStream describes
channels, consumer groups and payload schemas. OpenAPI: built by the gateway
(gateway/openapi.py) from its routes' contracts. `chirp docs` writes both; `chirp docs --check` fails when the
committed copies differ from what the code generates.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel
from starlette.routing import BaseRoute

from chirp.settings import Settings
from consumers.runtime import Consumer, Context, all_consumers, subscribe
from gateway.openapi import VERSION, openapi_schema
from ops.dlq import DECISIONS_TOPIC
from producers.broker import make_broker
from schemas import topics
from schemas.events import BY_TOPIC

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
    return _kafka_details(_typed_subscriptions(orjson.loads(spec.to_specification().to_json())), settings, consumers)


def _typed_subscriptions(doc: dict[str, Any]) -> dict[str, Any]:
    """Point each consumer's received messages at its topic's event schema (a retry topic's at no payload).

    The runtime's batch handler takes raw records (it decodes them itself), so FastStream sees no payload type: it
    names an untyped `<consumer>:Message:Payload`, which is dropped.
    """
    messages = doc["components"]["messages"]
    schemas = doc["components"]["schemas"]
    raw = {name for name, schema in schemas.items() if name.endswith(":Message:Payload") and len(schema) == 1}
    for channel in doc["channels"].values():
        model = BY_TOPIC.get(channel.get("address", ""))
        for ref in channel.get("messages", {}).values():
            message = messages[ref["$ref"].rsplit("/", 1)[-1]]
            payload = message["payload"].get("$ref", "").rsplit("/", 1)[-1]
            if payload in raw or payload == "EmptyPayload":
                message["payload"] = {"$ref": f"#/components/schemas/{model.__name__ if model else 'EmptyPayload'}"}
    for name in raw:
        schemas.pop(name)
    used = orjson.dumps(messages).decode()
    if "EmptyPayload" in used:
        schemas.setdefault("EmptyPayload", {"title": "EmptyPayload", "type": "null"})
    else:
        schemas.pop("EmptyPayload", None)
    return doc


EVENT_HEADERS = {
    "type": "object",
    "properties": {
        "correlation_id": {"type": "string", "description": "The request (or command) the event belongs to"},
        "causation_id": {"type": "string", "description": "The id of the event it was derived from, when derived"},
        "event_type": {"type": "string", "description": "The envelope's `type`"},
        "event_id": {"type": "string", "description": "The envelope's `id` (a ULID)"},
    },
    "required": ["correlation_id", "event_type", "event_id"],
}


def _kafka_details(doc: dict[str, Any], settings: Settings, consumers: list[Consumer]) -> dict[str, Any]:
    """Add what FastStream leaves out: partitions and retention per topic, each consumer's group id, and each
    event message's key and headers."""
    by_name = {t.name: t for t in topics.ALL}
    by_name.update({c.dead_letter_topic.name: c.dead_letter_topic for c in consumers})
    groups = {c.name: settings.group(c.name) for c in consumers}
    for channel in doc["channels"].values():
        topic = by_name.get(channel.get("address", ""))
        if topic is not None:
            kafka = channel.setdefault("bindings", {}).setdefault("kafka", {"bindingVersion": "0.4.0"})
            kafka["partitions"] = topic.partitions
            kafka["topicConfiguration"] = {"retention.ms": topic.retention_ms}
    for name, operation in doc["operations"].items():
        consumer = name.split(":", 1)[0]
        if operation["action"] == "receive" and consumer in groups:
            kafka = {"bindingVersion": "0.4.0", "groupId": {"type": "string", "enum": [groups[consumer]]}}
            operation.setdefault("bindings", {})["kafka"] = kafka
    for message in doc["components"]["messages"].values():
        payload = message.get("payload", {}).get("$ref", "").rsplit("/", 1)[-1]
        model = next((m for m in BY_TOPIC.values() if m.__name__ == payload), None)
        if model is not None:
            key = {"type": "string", "description": f"payload.{model.topic.key}: per-key order is what consumers use"}
            message["headers"] = EVENT_HEADERS
            message.setdefault("bindings", {})["kafka"] = {"bindingVersion": "0.4.0", "key": key}
    return doc


def app_routes() -> list[BaseRoute]:
    """The gateway's routes as create_app assembles them (without starting the app)."""
    from gateway.app import routes

    return routes()


def documents() -> dict[str, bytes]:
    """The file name and content of each generated document, as committed under docs/."""
    generated = {"asyncapi.json": asyncapi_schema(), "openapi.json": openapi_schema(app_routes())}
    return {
        name: orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
        for name, document in generated.items()
    }


def write(out: Path = DOCS_DIR) -> list[Path]:
    """Write asyncapi.json and openapi.json under `out`; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in documents().items():
        path = out / name
        path.write_bytes(content)
        written.append(path)
    return written


def stale(out: Path = DOCS_DIR) -> list[str]:
    """The documents under `out` that differ from what the code generates (missing ones included)."""
    return [
        name
        for name, content in documents().items()
        if not (out / name).exists() or (out / name).read_bytes() != content
    ]
