"""Which errors are the infrastructure's fault (an outage to wait out) rather than the work's.

`outage_reason(exc)` names the outage an exception reports (`postgres_disk_full`, `redis_oom`, `kafka_not_leader`
…), or returns None for anything else. A store that is full, read-only, starting, shutting down, out of memory or
unreachable fails every piece of work alike, and the same work succeeds once it is back: retrying it later is right,
and blaming the work (a dead letter, an error page naming the input) is wrong.

PostgreSQL errors are read by SQLSTATE, Redis errors by redis-py's classes (its reply prefix where it has no class),
Kafka errors by aiokafka's classes, ArangoDB's (CHIRP_STORE=arango) by python-arango's connection error, the HTTP
status 503 and its error numbers for a server shutting down or read-only (its transport's `requests` errors are
OSErrors). An exception raised `from` an outage (a store wrapping the driver's error) and an
exception group holding one are outages too.
"""

from __future__ import annotations

import re

import asyncpg
import redis.exceptions as redis_errors
from aiokafka import errors as kafka_errors
from arango import errno as arango_errno
from arango import exceptions as arango_errors

# SQLSTATE -> reason; the prefixes below name the rest of their class.
_POSTGRES_CODES = {
    "53100": "postgres_disk_full",
    "53200": "postgres_out_of_memory",
    "53300": "postgres_too_many_connections",
    "57P01": "postgres_admin_shutdown",
    "57P02": "postgres_crash_shutdown",
    "57P03": "postgres_cannot_connect_now",
    "25006": "postgres_read_only",
    "40001": "postgres_serialization_failure",
    "40P01": "postgres_deadlock",
}
_POSTGRES_PREFIXES = (
    ("53", "postgres_insufficient_resources"),  # 53000, 53400 (configuration limit exceeded)
    ("57P", "postgres_shutdown"),  # 57P04 database dropped, 57P05 idle session timeout (not 57014, a cancel)
    ("08", "postgres_connection"),
)

# Checked in order: subclasses before their bases (BusyLoadingError is a ConnectionError, MasterDownError a
# ClusterDownError).
_REDIS_CLASSES: tuple[tuple[type[Exception], str], ...] = (
    (redis_errors.OutOfMemoryError, "redis_oom"),
    (redis_errors.BusyLoadingError, "redis_loading"),
    (redis_errors.ReadOnlyError, "redis_read_only"),
    (redis_errors.MasterDownError, "redis_master_down"),
    (redis_errors.ClusterDownError, "redis_cluster_down"),
    (redis_errors.TryAgainError, "redis_try_again"),
    (redis_errors.TimeoutError, "redis_timeout"),
    (redis_errors.ConnectionError, "redis_connection"),
)
# `BUSY` (a script runs past its time limit) has no class of its own: a ResponseError whose message starts with the
# reply's prefix, or quotes it after a pipeline's "Command # N (...) of pipeline caused error: (".
_REDIS_BUSY = re.compile(r"""(?:^|caused error: \(['"])BUSY\b""")

_KAFKA_CLASSES: tuple[tuple[type[Exception], str], ...] = (
    (kafka_errors.NotEnoughReplicasError, "kafka_not_enough_replicas"),
    (kafka_errors.NotEnoughReplicasAfterAppendError, "kafka_not_enough_replicas"),
    (kafka_errors.LeaderNotAvailableError, "kafka_leader_not_available"),
    (kafka_errors.NotLeaderForPartitionError, "kafka_not_leader"),
    (kafka_errors.RequestTimedOutError, "kafka_request_timed_out"),
    (kafka_errors.KafkaTimeoutError, "kafka_timeout"),
    (kafka_errors.KafkaConnectionError, "kafka_connection"),
)


_ARANGO_CODES = {arango_errno.SHUTTING_DOWN: "arango_shutdown", arango_errno.READ_ONLY: "arango_read_only"}


class KeyStoreIncomplete(Exception):
    """An event was sealed with a key the erasure key store does not hold (never an erased one: those are kept as
    tombstones). The key store was lost or restored from an old backup: reading on would silently drop events, so
    this is an outage to repair (docs/erasure.md), not the event's fault."""


def outage_reason(exc: BaseException) -> str | None:
    """A short name for the outage `exc` reports, or None when it is not the infrastructure's fault."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if (reason := _own_reason(current)) is not None:
            return reason
        if isinstance(current, BaseExceptionGroup):
            for inner in current.exceptions:
                if (reason := outage_reason(inner)) is not None:
                    return reason
        current = current.__cause__
    return None


def _own_reason(exc: BaseException) -> str | None:
    if isinstance(exc, KeyStoreIncomplete):
        return "key_store_incomplete"
    if isinstance(exc, asyncpg.PostgresError):
        code = str(getattr(exc, "sqlstate", "") or "")
        if code in _POSTGRES_CODES:
            return _POSTGRES_CODES[code]
        return next((reason for prefix, reason in _POSTGRES_PREFIXES if code.startswith(prefix)), None)
    if isinstance(exc, asyncpg.InterfaceError) and not isinstance(exc, ValueError):
        # The client's side: "connection is closed", a pool closing. Its ValueErrors (DataError: a value the
        # column cannot hold) are the work's fault.
        return "postgres_connection"
    if isinstance(exc, redis_errors.RedisError):
        for cls, reason in _REDIS_CLASSES:
            if isinstance(exc, cls):
                return reason
        if isinstance(exc, redis_errors.ResponseError) and _REDIS_BUSY.search(str(exc)):
            return "redis_busy"
        return None
    if isinstance(exc, kafka_errors.KafkaError):
        for cls, reason in _KAFKA_CLASSES:
            if isinstance(exc, cls):
                return reason
        return "kafka_unavailable" if exc.retriable else None
    if isinstance(exc, arango_errors.ServerConnectionError):
        return "arango_connection"
    if isinstance(exc, arango_errors.ArangoServerError):
        if exc.error_code in _ARANGO_CODES:
            return _ARANGO_CODES[exc.error_code]
        return "arango_unavailable" if exc.http_code == 503 else None
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, OSError):  # ConnectionError and the socket errors beneath every client
        return "connection"
    return None
