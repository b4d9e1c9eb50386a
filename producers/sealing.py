"""Crypto-shredding on the wire (docs/erasure.md): an event's personal fields leave the process encrypted with a key
held outside Kafka, so deleting the key erases every copy of them.

A sealed record's value is the event's JSON without its personal fields plus `"sealed": "<base64 nonce+ciphertext>"`
(AES-256-GCM over the JSON object of those fields; the associated data binds it to the event id and key id, so a box
cannot be moved to another event). The header `keys` names the keys the event belongs to (`schemas/personal.py`),
the sealing key first, and `sealed: 1` says the value holds a box. Records without these headers are read as before.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from typing import Any, Protocol

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from schemas.events import Event
from schemas.personal import SEALED, bound_keys, owner

KEYS_HEADER = "keys"
SEALED_HEADER = "sealed"
NONCE_BYTES = 12
ERASED_KEY = b""  # an erased key where a key store answers with keys (a real key is 32 bytes)


class KeyStore(Protocol):
    """Where erasure keys live (store/keys.py): outside Kafka, deletable."""

    async def sealing_key(self, key_id: str, owner_id: str) -> bytes:
        """The key `key_id`, created for `owner_id` when it does not exist yet; `KeyErased` once it was deleted."""
        ...


class KeyErased(Exception):
    """The key an event would be sealed with, or was sealed with, has been deleted: the event is erased."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"key {key_id} was erased")
        self.key_id = key_id


class Unsealable(Exception):
    """A sealed record that cannot be opened with its key (tampered, or a key of another event)."""


def new_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def _aad(event_id: str, key_id: str) -> bytes:
    return f"{event_id}/{key_id}".encode()


async def seal(event: Event, keys: KeyStore | None) -> tuple[bytes, dict[str, str]]:
    """The record value and erasure headers for `event` (its plain JSON and no headers without a key store)."""
    bound = bound_keys(event) if keys is not None else ()
    if not bound:
        return event.model_dump_json().encode(), {}
    headers = {KEYS_HEADER: " ".join(bound)}
    fields = SEALED.get(type(event))
    if not fields or keys is None:
        return event.model_dump_json().encode(), headers
    key = await keys.sealing_key(bound[0], owner(bound[0], event))
    doc = event.model_dump(mode="json")
    personal = {name: doc["payload"].pop(name) for name in fields}
    nonce = os.urandom(NONCE_BYTES)
    box = AESGCM(key).encrypt(nonce, orjson.dumps(personal), _aad(event.id, bound[0]))
    doc["sealed"] = base64.b64encode(nonce + box).decode()
    headers[SEALED_HEADER] = "1"
    return orjson.dumps(doc), headers


def open_sealed(value: bytes, key_id: str, key: bytes) -> dict[str, Any]:
    """The event document of a sealed record value, its personal fields back in the payload."""
    doc = orjson.loads(value)
    raw = base64.b64decode(doc.pop("sealed"))
    try:
        plain = AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], _aad(str(doc.get("id")), key_id))
    except InvalidTag:
        raise Unsealable(f"the box does not open with key {key_id}") from None
    doc["payload"].update(orjson.loads(plain))
    return doc  # type: ignore[no-any-return]


def erasure_headers(headers: Mapping[str, bytes]) -> tuple[tuple[str, ...], bool]:
    """(the keys a record belongs to, whether its value is sealed) from its headers."""
    keys = headers.get(KEYS_HEADER)
    return (tuple(keys.decode().split()) if keys else ()), headers.get(SEALED_HEADER) == b"1"
