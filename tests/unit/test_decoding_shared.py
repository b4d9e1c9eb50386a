"""Consumers of one process that read the same topic share its decoded events, and sharing changes no outcome."""

from __future__ import annotations

import pytest
from aiokafka import ConsumerRecord

from consumers.runtime.decoding import Erased, RecentlyDecoded, Rejected, decode
from producers.sealing import ERASED_KEY, KEYS_HEADER
from schemas.events import PostCreated, PostCreatedData, new_id


def record(value: bytes, topic: str = "t", headers: list[tuple[str, bytes]] | None = None) -> ConsumerRecord:
    return ConsumerRecord(topic, 0, 0, 0, 0, b"k", value, None, 1, len(value), headers or [])


def event_bytes() -> bytes:
    return PostCreated(payload=PostCreatedData(post_id=new_id(), author_id="a", body="hi")).model_dump_json().encode()


def test_a_record_is_decoded_once_for_every_consumer_of_the_process() -> None:
    recent = RecentlyDecoded({"t"})
    value = event_bytes()
    first = decode(record(value), PostCreated, {}, recent)
    assert decode(record(value), PostCreated, {}, recent) is first
    assert decode(record(value, "other"), PostCreated, {}, recent) is not first, "only the shared topics"


def test_sharing_changes_no_outcome() -> None:
    recent = RecentlyDecoded({"t"}, size=2)
    value = event_bytes()
    bound = [(KEYS_HEADER, b"p:1")]
    decode(record(value, headers=bound), PostCreated, {"p:1": b"k" * 32}, recent)
    with pytest.raises(Erased):
        decode(record(value, headers=bound), PostCreated, {"p:1": ERASED_KEY}, recent)
    with pytest.raises(Rejected):
        decode(record(b"{not json"), PostCreated, {}, recent)
    with pytest.raises(Rejected):
        decode(record(b"{not json"), PostCreated, {}, recent)
    for _ in range(5):  # bounded: two generations of `size`
        decode(record(event_bytes()), PostCreated, {}, recent)
    assert len(recent.new) + len(recent.old) <= 4
