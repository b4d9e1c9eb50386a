"""`in_dependency_order`: every model after the ones it reads, independent ones side by side, at most `jobs`
replays at once, consumers of the same topics replayed together when there are more of them than slots."""

from __future__ import annotations

import asyncio

import pytest

from consumers.runtime import Consumer
from ops.replay import in_dependency_order, together
from schemas.events import PostCreated
from schemas.topics import Topic


async def _noop(events: list[PostCreated], ctx: object) -> None:
    return None


def owning(name: str, *after: str, reads: tuple[str, ...] = ()) -> Consumer:
    consumer = Consumer(name, tables=(f"{name}_table",), after=after)
    for topic in reads:
        consumer.on(Topic(topic, key="post_id"), batch=True, model=PostCreated)(_noop)
    return consumer


async def test_models_wait_for_what_they_read_and_jobs_bound_the_parallelism() -> None:
    consumers = [owning("d", "a", "b"), owning("c", "a"), owning("a"), owning("b"), owning("e")]
    log: list[tuple[str, str]] = []
    running, most = 0, 0

    async def run(group: list[Consumer]) -> list[str]:
        nonlocal running, most
        [consumer] = group  # nothing shares a topic: each alone
        running += 1
        most = max(most, running)
        log.append(("start", consumer.name))
        await asyncio.sleep(0.05 if consumer.name == "a" else 0.01)
        log.append(("end", consumer.name))
        running -= 1
        return [consumer.name.upper()]

    results = await in_dependency_order(consumers, run, jobs=2)

    assert sorted(results) == ["A", "B", "C", "D", "E"]
    assert most == 2
    for name, upstream in (("c", "a"), ("d", "a"), ("d", "b")):
        assert log.index(("end", upstream)) < log.index(("start", name))


async def test_a_free_slot_goes_to_what_others_wait_on_then_to_the_most_work() -> None:
    consumers = [owning("d", reads=("td",)), owning("b", "a", reads=("tb",)), owning("c", reads=("tc",)), owning("a")]
    events = {"tb": 5, "tc": 10, "td": 1}
    started: list[str] = []

    async def run(group: list[Consumer]) -> list[str]:
        started.extend(c.name for c in group)
        await asyncio.sleep(0)
        return [c.name for c in group]

    results = await in_dependency_order(consumers, run, jobs=1, topic_events=events)

    assert results == ["a", "b", "c", "d"]  # rebuild order
    assert started == ["a", "c", "b", "d"]  # `a` is awaited by `b`; then the most work first


async def test_consumers_of_the_same_topics_share_a_replay_when_slots_are_short() -> None:
    """The product's shape: `up` is read by `late`; `x`, `y`, `z` and `late` read the big topic."""
    consumers = [
        owning("up", reads=("follows",)),
        owning("x", reads=("parsed",)),
        owning("y", "up", reads=("parsed",)),
        owning("z", "up", reads=("parsed", "follows")),
        owning("late", "up", reads=("parsed",)),
        owning("other", reads=("own",)),
    ]
    events = {"parsed": 1000, "follows": 100, "own": 10}
    groups: list[list[str]] = []

    async def run(group: list[Consumer]) -> list[str]:
        groups.append([c.name for c in group])
        await asyncio.sleep(0.01)
        return [c.name for c in group]

    results = await in_dependency_order(consumers, run, jobs=2, topic_events=events)

    assert sorted(results) == sorted(c.name for c in consumers)
    # `up` (awaited) runs alone; `x` and `other` share nothing; then y, z and late share the big topic.
    assert groups[:2] == [["up"], ["x"]]
    assert ["late", "y", "z"] in groups, "in rebuild order"
    assert sum(len(g) for g in groups) == len(consumers)


def test_together_merges_the_pair_sharing_most_and_keeps_apart_what_others_wait_on() -> None:
    a, b, c = owning("a", reads=("t1", "t2")), owning("b", reads=("t1",)), owning("c", reads=("t2",))
    events = {"t1": 100, "t2": 10}
    names = lambda groups: [[c.name for c in g] for g in groups]  # noqa: E731
    assert names(together([a, b, c], 2, events)) == [["a", "b"], ["c"]]
    assert names(together([a, b, c], 1, events)) == [["a", "b", "c"]]
    assert names(together([a, b, c], 3, events)) == [["a"], ["b"], ["c"]], "enough slots: each alone"
    assert names(together([a, b, c], 1, events, alone={"a"})) == [["a"], ["b"], ["c"]], "b and c share nothing"
    assert names(together([a, b, c], 1, {})) == [["a"], ["b"], ["c"]], "no counts: nothing shared"


async def test_a_failure_stops_what_depends_on_it() -> None:
    started: list[str] = []

    async def run(group: list[Consumer]) -> list[None]:
        started.extend(c.name for c in group)
        if group[0].name == "a":
            raise RuntimeError("a failed")
        return [None for _ in group]

    with pytest.raises(RuntimeError, match="a failed"):
        await in_dependency_order([owning("a"), owning("c", "a")], run, jobs=2)
    assert "c" not in started


def test_long_consumer_names_get_distinct_short_shadow_names() -> None:
    from ops.replay import _safe

    first, second = _safe("bench-rb-01m87hpy0r3azvwqx54aw-posts"), _safe("bench-rb-01m87hpy0r3azvwqx54aw-search")
    assert first != second and len(first) <= 30 and len(second) <= 30
    assert _safe("timelines") == "timelines"
