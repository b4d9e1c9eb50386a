"""Which errors are outages to wait out, and which are the work's fault: one case per class of error."""

from __future__ import annotations

import asyncpg
import pytest
import redis.exceptions as redis_errors
from aiokafka import errors as kafka_errors
from redis._parsers.base import BaseParser

from chirp.outages import outage_reason


def postgres(sqlstate: str, message: str = "server says no") -> asyncpg.PostgresError:
    """The exception asyncpg raises for an error response carrying `sqlstate`."""
    error: asyncpg.PostgresError = asyncpg.PostgresError.new({"C": sqlstate, "M": message, "S": "ERROR"})
    return error


def redis_reply(reply: str) -> redis_errors.RedisError:
    """The exception redis-py raises for an error reply (the prefix is the reply's first word)."""
    error: redis_errors.RedisError = BaseParser.parse_error(reply)
    return error


@pytest.mark.parametrize(
    ("sqlstate", "reason"),
    [
        ("53100", "postgres_disk_full"),
        ("53200", "postgres_out_of_memory"),
        ("53300", "postgres_too_many_connections"),
        ("53000", "postgres_insufficient_resources"),
        ("53400", "postgres_insufficient_resources"),
        ("57P01", "postgres_admin_shutdown"),
        ("57P02", "postgres_crash_shutdown"),
        ("57P03", "postgres_cannot_connect_now"),
        ("57P04", "postgres_shutdown"),
        ("08006", "postgres_connection"),
        ("08001", "postgres_connection"),
        ("08P01", "postgres_connection"),
        ("25006", "postgres_read_only"),
        ("40001", "postgres_serialization_failure"),
        ("40P01", "postgres_deadlock"),
    ],
)
def test_postgres_outages_by_sqlstate(sqlstate: str, reason: str) -> None:
    assert outage_reason(postgres(sqlstate)) == reason


def test_postgres_errors_by_their_classes() -> None:
    assert outage_reason(asyncpg.DiskFullError("could not extend file")) == "postgres_disk_full"
    assert outage_reason(asyncpg.ReadOnlySQLTransactionError("read-only")) == "postgres_read_only"
    assert outage_reason(asyncpg.InterfaceError("connection is closed")) == "postgres_connection"


@pytest.mark.parametrize(
    "error",
    [
        postgres("23505"),  # unique violation
        postgres("22001"),  # value too long
        postgres("42P01"),  # undefined table: a bug, held by the circuit breaker, not waited out
        postgres("57014"),  # query canceled (a statement timeout)
        asyncpg.DataError("invalid input for query argument $1"),  # a value the column cannot hold
    ],
)
def test_postgres_errors_that_are_the_works_fault(error: Exception) -> None:
    assert outage_reason(error) is None


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("OOM command not allowed when used memory > 'maxmemory'.", "redis_oom"),
        ("LOADING Redis is loading the dataset in memory", "redis_loading"),
        ("READONLY You can't write against a read only replica.", "redis_read_only"),
        ("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.", "redis_master_down"),
        ("BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.", "redis_busy"),
        ("ERR max number of clients reached", "redis_connection"),
    ],
)
def test_redis_outages_by_reply(reply: str, reason: str) -> None:
    assert outage_reason(redis_reply(reply)) == reason


def test_redis_errors_in_a_pipeline_keep_their_reason() -> None:
    """A pipeline re-raises the first command's error with its message rewritten to name the command."""
    busy = redis_reply("BUSY Redis is busy running a script.")
    busy.args = ("Command # 1 (SET y 1) of pipeline caused error: ('BUSY Redis is busy running a script.',)",)
    assert outage_reason(busy) == "redis_busy"
    oom = redis_reply("OOM command not allowed when used memory > 'maxmemory'.")
    oom.args = ('Command # 2 (HSET h f v) of pipeline caused error: ("command not allowed ...",)',)
    assert outage_reason(oom) == "redis_oom"


def test_redis_connection_and_timeout() -> None:
    assert outage_reason(redis_errors.ConnectionError("Connection refused")) == "redis_connection"
    assert outage_reason(redis_errors.TimeoutError("Timeout reading")) == "redis_timeout"


@pytest.mark.parametrize(
    "reply",
    [
        "WRONGTYPE Operation against a key holding the wrong kind of value",
        "ERR value is not a valid float",
        "NOSCRIPT No matching script.",
        "ERR user_script:3: BUSY is a word a script may say",  # BUSY only as the reply's prefix
    ],
)
def test_redis_errors_that_are_the_works_fault(reply: str) -> None:
    assert outage_reason(redis_reply(reply)) is None


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (kafka_errors.NotEnoughReplicasError(), "kafka_not_enough_replicas"),
        (kafka_errors.NotEnoughReplicasAfterAppendError(), "kafka_not_enough_replicas"),
        (kafka_errors.LeaderNotAvailableError(), "kafka_leader_not_available"),
        (kafka_errors.NotLeaderForPartitionError(), "kafka_not_leader"),
        (kafka_errors.RequestTimedOutError(), "kafka_request_timed_out"),
        (kafka_errors.KafkaTimeoutError(), "kafka_timeout"),
        (kafka_errors.KafkaConnectionError(), "kafka_connection"),
        (kafka_errors.NodeNotReadyError(), "kafka_unavailable"),
    ],
)
def test_kafka_outages(error: Exception, reason: str) -> None:
    assert outage_reason(error) == reason


def test_kafka_errors_that_are_the_works_fault() -> None:
    assert outage_reason(kafka_errors.MessageSizeTooLargeError()) is None
    assert outage_reason(kafka_errors.InvalidTopicError()) is None


def test_network_errors_and_plain_bugs() -> None:
    assert outage_reason(ConnectionRefusedError()) == "connection"
    assert outage_reason(TimeoutError()) == "timeout"
    assert outage_reason(ValueError("bad")) is None
    assert outage_reason(KeyError("x")) is None


def test_a_wrapped_outage_is_an_outage() -> None:
    """A store may raise its own error from the driver's, or a task group may gather several."""
    try:
        try:
            raise asyncpg.DiskFullError("could not extend file")
        except asyncpg.PostgresError as inner:
            raise RuntimeError("saving posts failed") from inner
    except RuntimeError as wrapped:
        assert outage_reason(wrapped) == "postgres_disk_full"
    group = ExceptionGroup("several", [ValueError("x"), redis_reply("OOM command not allowed")])
    assert outage_reason(group) == "redis_oom"
    assert outage_reason(ExceptionGroup("bugs", [ValueError("x")])) is None


def arango_error(status: int, errno: int | None, cls: type[Exception] | None = None) -> Exception:
    """The exception python-arango raises for a server reply with this HTTP status and error number."""
    from arango import exceptions as arango_errors
    from arango.request import Request
    from arango.response import Response

    response = Response("POST", "http://arango/_api/cursor", {}, status, "status", "{}")
    response.error_code = errno
    response.error_message = "server says no"
    return (cls or arango_errors.AQLQueryExecuteError)(response, Request("POST", "/_api/cursor"))


@pytest.mark.parametrize(
    ("status", "errno", "reason"),
    [
        (503, 30, "arango_shutdown"),
        (403, 1004, "arango_read_only"),
        (503, None, "arango_unavailable"),
        (503, 503, "arango_unavailable"),
        (400, 1501, None),  # a query the server cannot parse: the work's fault
        (409, 1210, None),  # a unique constraint
    ],
)
def test_arango_errors_by_status_and_number(status: int, errno: int | None, reason: str | None) -> None:
    assert outage_reason(arango_error(status, errno)) == reason


def test_arango_unreachable_is_an_outage() -> None:
    import requests
    from arango import exceptions as arango_errors

    assert outage_reason(arango_error(401, None, arango_errors.ServerConnectionError)) == "arango_connection"
    assert outage_reason(requests.ConnectionError("refused")) == "connection"  # the transport's own error
