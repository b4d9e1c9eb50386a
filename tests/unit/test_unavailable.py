"""Which errors are the infrastructure's fault (503), and what a publish past its deadline says about the event."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import pytest
import redis.exceptions as redis_errors
from aiokafka.errors import LeaderNotAvailableError, NotEnoughReplicasError, RequestTimedOutError

from gateway.errors import unavailable
from producers.broker import Publisher, PublishFailed
from schemas.events import FollowData, UserFollowed

OUTAGES: list[tuple[BaseException, str]] = [
    (redis_errors.ConnectionError("Error 111 connecting"), "redis"),
    (redis_errors.BusyLoadingError("LOADING Redis is loading the dataset in memory"), "redis"),
    (redis_errors.OutOfMemoryError("OOM command not allowed when used memory > 'maxmemory'."), "redis"),
    (redis_errors.ResponseError("BUSY Redis is busy running a script."), "redis"),
    (redis_errors.ReadOnlyError("READONLY You can't write against a read only replica."), "redis"),
    (redis_errors.MasterDownError("MASTERDOWN Link with MASTER is down"), "redis"),
    (asyncpg.exceptions.DiskFullError("could not extend file: No space left on device"), "postgres"),
    (asyncpg.exceptions.TooManyConnectionsError("too many clients already"), "postgres"),
    (asyncpg.exceptions.CannotConnectNowError("the database system is starting up"), "postgres"),
    (asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"), "postgres"),
    (asyncpg.exceptions.ReadOnlySQLTransactionError("cannot execute INSERT in a read-only transaction"), "postgres"),
    (asyncpg.exceptions.SerializationError("could not serialize access"), "postgres"),
    (asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"), "postgres"),
    (NotEnoughReplicasError(), "kafka"),
    (LeaderNotAvailableError(), "kafka"),
    (PublishFailed("no ack", may_have_been_published=True), "kafka"),
]


@pytest.mark.parametrize(("error", "dependency"), OUTAGES, ids=lambda v: type(v).__name__)
def test_outages_are_503_naming_the_dependency(error: BaseException, dependency: str) -> None:
    refusal = unavailable(error, retry_after_s=7)
    assert refusal is not None
    assert (refusal.status, refusal.headers) == (503, {"Retry-After": "7"})
    assert refusal.details is not None and refusal.details["dependency"] == dependency


@pytest.mark.parametrize(
    "error",
    [
        ValueError("a bug"),
        redis_errors.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
        asyncpg.exceptions.UniqueViolationError("duplicate key"),
        asyncpg.exceptions.UndefinedColumnError("column does not exist"),
        OSError("not from a store client"),
    ],
    ids=lambda v: type(v).__name__,
)
def test_other_errors_are_not_outages(error: BaseException) -> None:
    assert unavailable(error) is None


class StubBroker:
    """Takes records like FastStream's broker with `no_confirm=True`: queueing may hang, the ack may never come."""

    def __init__(self, *, queue_hangs: bool = False, ack: BaseException | str | None = "never") -> None:
        self.queue_hangs, self.ack = queue_hangs, ack

    async def publish(self, *_: Any, no_confirm: bool = False, **__: Any) -> asyncio.Future[None]:
        assert no_confirm
        if self.queue_hangs:
            await asyncio.sleep(60)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if isinstance(self.ack, BaseException):
            future.set_exception(self.ack)
        elif self.ack is None:
            future.set_result(None)
        return future


def event() -> UserFollowed:
    return UserFollowed(actor="a", payload=FollowData(follower_id="a", followee_id="b"))


@pytest.mark.parametrize(
    ("broker", "may_have_been_published"),
    [
        (StubBroker(queue_hangs=True), False),  # no metadata, no room: the record never left
        (StubBroker(), True),  # queued, sent, no acknowledgement: Kafka may still write it
        (StubBroker(ack=RequestTimedOutError()), True),
        (StubBroker(ack=NotEnoughReplicasError()), False),
    ],
    ids=["not-queued", "no-ack", "request-timed-out", "refused"],
)
async def test_publish_has_a_deadline_and_says_whether_it_may_have_been_published(
    broker: StubBroker, may_have_been_published: bool
) -> None:
    publisher = Publisher(broker, deadline_s=0.3)  # type: ignore[arg-type]
    started = time.monotonic()
    with pytest.raises(PublishFailed) as failed:
        await publisher.publish(event())
    assert time.monotonic() - started < 1.0
    assert failed.value.may_have_been_published is may_have_been_published


async def test_publish_within_the_deadline_returns() -> None:
    await Publisher(StubBroker(ack=None), deadline_s=0.3).publish(event())  # type: ignore[arg-type]


def test_a_busy_reply_inside_a_pipeline_is_an_outage() -> None:
    error = redis_errors.ResponseError(
        "Command # 1 (EXISTS chirp:session:x) of pipeline caused error: "
        "('BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.',)"
    )
    assert unavailable(error) is not None
    assert unavailable(redis_errors.ResponseError("Command # 1 (GET k) of pipeline caused error: WRONGTYPE")) is None
