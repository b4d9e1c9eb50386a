"""JSON Schema of every event, generated from the models and kept as files under `schemas/json/`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from schemas.events import ALL_EVENTS, Event
from schemas.topics import NAMESPACE

DIRECTORY = Path(__file__).with_name("json")


def schema_of(model: type[Event]) -> dict[str, Any]:
    """The JSON Schema of one event model, with its topic and key recorded for readers."""
    schema = model.model_json_schema()
    schema["x-topic"] = model.topic.name.removeprefix(NAMESPACE)  # as the app names it, whoever exports
    schema["x-key"] = model.topic.key
    return schema


def render(model: type[Event]) -> str:
    return json.dumps(schema_of(model), indent=2, sort_keys=True) + "\n"


def path_of(model: type[Event]) -> Path:
    return DIRECTORY / f"{model.model_fields['type'].default}.json"


def export() -> list[Path]:
    """Write one file per event; returns the paths written."""
    DIRECTORY.mkdir(exist_ok=True)
    written = []
    for model in ALL_EVENTS:
        path_of(model).write_text(render(model))
        written.append(path_of(model))
    return written
