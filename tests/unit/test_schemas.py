"""Event contracts: envelopes, keys, versions and the exported JSON Schema files."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from schemas import topics
from schemas.events import ALL_EVENTS, BY_TOPIC, FollowData, PostCreated, PostCreatedData, UserFollowed
from schemas.jsonschema import path_of, schema_of


@pytest.mark.parametrize("model", ALL_EVENTS, ids=lambda m: m.__name__)
def test_exported_json_schema_matches_the_model(model) -> None:
    on_disk = json.loads(path_of(model).read_text())
    assert on_disk == schema_of(model), "run `chirp schemas` to regenerate schemas/json/"


def test_every_topic_has_one_event_model() -> None:
    assert set(BY_TOPIC) == {t.name for t in topics.ALL}


def test_envelope_fields_and_key() -> None:
    event = UserFollowed(payload=FollowData(follower_id="a", followee_id="b"), actor="a")
    data = json.loads(event.model_dump_json())
    assert set(data) == {"id", "type", "version", "occurred_at", "correlation_id", "causation_id", "actor", "payload"}
    assert len(data["id"]) == 26 and data["type"] == "user-followed" and data["version"] == 1
    assert event.key == "a", "follows are keyed by follower so one person's actions stay ordered"


def test_unknown_version_and_bad_payload_are_refused() -> None:
    good = PostCreated(payload=PostCreatedData(post_id="p", author_id="a", body="hi")).model_dump()
    with pytest.raises(ValidationError):
        PostCreated.model_validate({**good, "version": 2})
    with pytest.raises(ValidationError):
        PostCreated.model_validate({**good, "payload": {**good["payload"], "body": ""}})
    with pytest.raises(ValidationError):
        PostCreated.model_validate({**good, "surprise": 1})
