"""`HiredisPacking` sends the same bytes as redis-py's own asyncio packer, for commands and pipelines."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

from chirp.redis_client import HiredisPacking

COMMANDS: list[tuple[Any, ...]] = [
    ("SET", "k", "v"),
    ("EVALSHA", "f" * 40, 3, "chirp:tl:1", "chirp:tl:2", "~replay:x:1:chirp:tl:3", "", "0", "1735689600.123"),
    ("ZADD", "z", 1.5, "m", -3, "n", 1e20, "o"),
    ("HSET", "h", "ünïcödé", "✓ 🐦"),
    ("CONFIG GET", "maxmemory"),  # a command name of two words
    (b"GET", b"raw bytes \x00\xff", bytearray(b"ba"), memoryview(b"mv")),
    ("INCRBY", "n", 123456789012345678901234567890),
]


@pytest.mark.parametrize("args", COMMANDS)
def test_one_command_packs_to_the_same_bytes(args: tuple[Any, ...]) -> None:
    assert b"".join(HiredisPacking().pack_command(*args)) == b"".join(Connection().pack_command(*args))


def test_a_pipeline_packs_to_the_same_bytes() -> None:
    assert b"".join(HiredisPacking().pack_commands(COMMANDS)) == b"".join(Connection().pack_commands(COMMANDS))


def test_an_argument_redis_cannot_take_is_refused() -> None:
    with pytest.raises(DataError):
        HiredisPacking().pack_command("SET", "k", {"a": 1})
