"""Every read model the consumers write, in one comparable form, for the replay and erasure tests.

Which tables and Redis prefixes exist is read from the replay's registry (each consumer's `Consumer.read_model`,
as `chirp rebuild --all` reads it), so a model added later is snapshotted too. A snapshot holds, per table and per
Redis prefix, one canonical JSON line per row, per key (strings) or per member of a key (hash fields, set and sorted
set members, list items), sorted, restricted to what mentions one of the `tokens` (the ids, handles and tags of a
test's own users and posts: other tests share the database and Redis). What legitimately differs between a live
model and its replay is left out by name (`UNCOMPARED_*`); the home timelines are compared as their users read them.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import datetime
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from consumers.runtime import all_consumers
from ops.replay import read_model_of, rebuild_order

Snapshot = dict[str, list[str]]

# Columns that record when a consumer wrote a row rather than anything in the log (none so far: every time column
# of the read models is an event's time).
UNCOMPARED_COLUMNS: dict[str, frozenset[str]] = {}
# Redis keys (by prefix) that are not state rebuilt from the log (those that name no token are left out anyway):
UNCOMPARED_KEYS = (
    "chirp:tl:home:",  # a timeline exists only once its user reads it (a replay writes none): compared as read
    "chirp:tl:lock:",  # a timeline's rebuild under way
    "chirp:tl:recent:",  # follows the follows table did not show yet, kept minutes (a replay keeps none)
    "chirp:tl:fresh:",  # posts the posts table did not show yet, kept minutes (a replay keeps none)
    "chirp:tl:held:",  # a timeline's index of its reposts, kept with the timeline: compared as read
    "chirp:tl:reposted:",  # reposts the interactions table did not show yet, kept minutes (a replay keeps none)
    "chirp:rel:version:",  # a count of changes to a user's hidden set, for the gateway's cache: a replay counts anew
    "trending:{trending}:ranking:",  # every test's tags ranked at the model's `now`, recomputed by the refresher
)


def models() -> tuple[list[str], list[str]]:
    """Every table and Redis prefix a consumer owns, in rebuild order (the registry `chirp rebuild --all` reads)."""
    owned = [read_model_of(c) for c in rebuild_order(all_consumers())]
    return [t for m in owned for t in m.tables], [p for m in owned for p in m.redis_prefixes]


def _line(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v))


Token = str | tuple[str, ...]  # a tuple is mentioned where each of its parts is


def mentions(line: str, tokens: Collection[Token]) -> bool:
    return any(t in line if isinstance(t, str) else all(part in line for part in t) for t in tokens)


def _blank(table: str, row: dict[str, Any]) -> bool:
    """A row that says what no row says: counters at zero of a post that is not deleted (nobody likes it any more)."""
    counts = ("like_count", "repost_count", "quote_count")
    return table == "post_counters" and row["deleted_at"] is None and not any(row[c] for c in counts)


async def table_rows(pg: asyncpg.Pool, table: str, tokens: Collection[str]) -> list[str]:
    """The table's rows that mention a token, without the uncompared columns, blank rows left out (`_blank`)."""
    skipped = UNCOMPARED_COLUMNS.get(table, frozenset())
    rows = [dict(r) for r in await pg.fetch(f"SELECT * FROM {table}")]
    rows = [{k: v for k, v in r.items() if k not in skipped} for r in rows if not _blank(table, r)]
    return sorted(line for line in map(_line, rows) if mentions(line, tokens))


async def _key_lines(redis: aioredis.Redis, key: str) -> list[str]:
    """One line per member of the key: [key, member] or [key, member, score or value]."""
    kind = await redis.type(key)
    if kind == "string":
        return [_line([key, await redis.get(key)])]
    if kind == "hash":
        return [_line([key, f, v]) for f, v in (await redis.hgetall(key)).items()]
    if kind == "set":
        return [_line([key, m]) for m in await redis.smembers(key)]
    if kind == "zset":
        return [_line([key, m, s]) for m, s in await redis.zrange(key, 0, -1, withscores=True)]
    if kind == "list":
        return [_line([key, i]) for i in await redis.lrange(key, 0, -1)]
    return []  # gone since the scan


async def redis_lines(redis: aioredis.Redis, prefix: str, tokens: Collection[str]) -> list[str]:
    """The prefix's keys, one line per member, that mention a token (in the key's name or in the member)."""
    found: list[str] = []
    async for key in redis.scan_iter(match=f"{prefix}*", count=1000):
        if key.startswith(UNCOMPARED_KEYS):
            continue
        found += [line for line in await _key_lines(redis, key) if mentions(line, tokens)]
    return sorted(found)


async def snapshot(pg: asyncpg.Pool, redis: aioredis.Redis, tokens: Collection[str]) -> Snapshot:
    """Every read model's rows and keys that mention a token (`redis` decodes responses)."""
    tables, prefixes = models()
    found = {f"table {t}": await table_rows(pg, t, tokens) for t in tables}
    found |= {f"redis {p}": await redis_lines(redis, p, tokens) for p in prefixes}
    return found


def without(found: Snapshot, tokens: Collection[Token]) -> Snapshot:
    """The snapshot without the lines that mention any of `tokens`."""
    return {model: [line for line in lines if not mentions(line, tokens)] for model, lines in found.items()}


def only(found: Snapshot, tokens: Collection[Token]) -> Snapshot:
    """The lines of the snapshot that mention one of `tokens`, in the models that have any."""
    kept = {model: [line for line in lines if mentions(line, tokens)] for model, lines in found.items()}
    return {model: lines for model, lines in kept.items() if lines}


def differences(expected: Snapshot, actual: Snapshot) -> dict[str, dict[str, list[str]]]:
    """Per model that differs, the lines only expected (`missing`) and the lines only found (`extra`)."""
    found = {}
    for model in sorted(expected.keys() | actual.keys()):
        before, after = set(expected.get(model, ())), set(actual.get(model, ()))
        if before != after:
            found[model] = {"missing": sorted(before - after), "extra": sorted(after - before)}
    return found
