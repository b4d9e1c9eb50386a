"""Concurrent identical reads share one query; a caller going away does not take the answer from the others."""

from __future__ import annotations

import asyncio

import pytest

from chirp.single_flight import SingleFlight


class Store:
    def __init__(self) -> None:
        self.queries = 0
        self.release = asyncio.Event()

    async def read(self, answer: str) -> str:
        self.queries += 1
        await self.release.wait()
        if answer == "fail":
            raise LookupError(answer)
        return answer


async def test_concurrent_identical_reads_send_one_query() -> None:
    store, flight = Store(), SingleFlight[str]()
    waiting = [asyncio.create_task(flight.run("k", lambda: store.read("a"))) for _ in range(5)]
    other = asyncio.create_task(flight.run("other", lambda: store.read("b")))
    await asyncio.sleep(0.01)
    store.release.set()
    assert await asyncio.gather(*waiting, other) == ["a"] * 5 + ["b"]
    assert store.queries == 2
    assert await flight.run("k", lambda: store.read("c")) == "c"  # done reads are not answers for later ones


async def test_a_caller_going_away_leaves_the_read_to_the_others() -> None:
    store, flight = Store(), SingleFlight[str]()
    first = asyncio.create_task(flight.run("k", lambda: store.read("a")))
    second = asyncio.create_task(flight.run("k", lambda: store.read("a")))
    await asyncio.sleep(0.01)
    first.cancel()  # its client disconnected
    store.release.set()
    assert await second == "a" and store.queries == 1
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_every_caller_gets_the_reads_error() -> None:
    store, flight = Store(), SingleFlight[str]()
    store.release.set()
    results = await asyncio.gather(
        *(flight.run("k", lambda: store.read("fail")) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, LookupError) for r in results) and store.queries == 1
