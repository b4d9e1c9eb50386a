"""`in_dependency_order`: every model after the ones it reads, independent ones side by side, at most `jobs`."""

from __future__ import annotations

import asyncio

import pytest

from chirp.ops.replay import in_dependency_order
from consumers.runtime import Consumer


def owning(name: str, *after: str) -> Consumer:
    return Consumer(name, tables=(f"{name}_table",), after=after)


async def test_models_wait_for_what_they_read_and_jobs_bound_the_parallelism() -> None:
    consumers = [owning("d", "a", "b"), owning("c", "a"), owning("a"), owning("b"), owning("e")]
    log: list[tuple[str, str]] = []
    running, most = 0, 0

    async def run(consumer: Consumer) -> str:
        nonlocal running, most
        running += 1
        most = max(most, running)
        log.append(("start", consumer.name))
        await asyncio.sleep(0.05 if consumer.name == "a" else 0.01)
        log.append(("end", consumer.name))
        running -= 1
        return consumer.name.upper()

    results = await in_dependency_order(consumers, run, jobs=2)

    assert sorted(results) == ["A", "B", "C", "D", "E"]
    assert most == 2
    for name, upstream in (("c", "a"), ("d", "a"), ("d", "b")):
        assert log.index(("end", upstream)) < log.index(("start", name))


async def test_a_free_slot_goes_to_what_others_wait_on_then_to_the_most_work() -> None:
    consumers = [owning("d"), owning("b", "a"), owning("c"), owning("a")]
    size = {"a": 1, "b": 5, "c": 10, "d": 1}
    started: list[str] = []

    async def run(consumer: Consumer) -> str:
        started.append(consumer.name)
        await asyncio.sleep(0)
        return consumer.name

    results = await in_dependency_order(consumers, run, jobs=1, size=lambda c: size[c.name])

    assert results == ["a", "b", "c", "d"]  # rebuild order
    assert started == ["a", "c", "b", "d"]  # `a` is awaited by `b`; then the most work first


async def test_a_failure_stops_what_depends_on_it() -> None:
    started: list[str] = []

    async def run(consumer: Consumer) -> None:
        started.append(consumer.name)
        if consumer.name == "a":
            raise RuntimeError("a failed")

    with pytest.raises(RuntimeError, match="a failed"):
        await in_dependency_order([owning("a"), owning("c", "a")], run, jobs=2)
    assert "c" not in started


def test_long_consumer_names_get_distinct_short_shadow_names() -> None:
    from chirp.ops.replay import _safe

    first, second = _safe("bench-rb-01m87hpy0r3azvwqx54aw-posts"), _safe("bench-rb-01m87hpy0r3azvwqx54aw-search")
    assert first != second and len(first) <= 30 and len(second) <= 30
    assert _safe("timelines") == "timelines"
