"""The Redis half of a replay: a client that writes shadow keys and announces nothing; the swap that moves them in
one script, stale live keys going."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from chirp.settings import Settings
from consumers.runtime import Context
from ops._shadow_redis import _glob_escape, shadow_client, swap
from schemas.events import new_id


async def test_swap_moves_shadow_keys_and_drops_stale_live_ones(redis_client: aioredis.Redis) -> None:
    run = new_id()
    prefix, other = f"sw:{run}:[a]*:", f"sw2:{run}:"  # glob characters in a prefix match only themselves
    root = f"~replay:sw:{run}:"
    await redis_client.set(f"{prefix}kept", "old")
    await redis_client.set(f"{prefix}stale", "old")
    await redis_client.set(f"sw:{run}:a-lookalike:kept", "not ours")
    await redis_client.set(f"{root}{prefix}kept", "new")
    await redis_client.sadd(f"{root}{prefix}added", "x", "y")
    for i in range(2500):  # more than one SCAN page
        await redis_client.set(f"{root}{other}{i}", str(i))

    assert await swap(redis_client, (prefix, other), root) == 2 + 2500

    assert await redis_client.get(f"{prefix}kept") == "new"
    assert await redis_client.smembers(f"{prefix}added") == {"x", "y"}
    assert not await redis_client.exists(f"{prefix}stale")
    assert await redis_client.get(f"sw:{run}:a-lookalike:kept") == "not ours"
    assert await redis_client.get(f"{other}2499") == "2499"
    assert [k async for k in redis_client.scan_iter(match=f"~replay:sw:{run}:*")] == []
    await redis_client.delete(f"sw:{run}:a-lookalike:kept")
    async for key in redis_client.scan_iter(match=f"sw*:{run}:*"):
        await redis_client.delete(key)


async def test_a_shadow_client_writes_shadow_keys_and_announces_nothing(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    run = new_id()
    prefix, root = f"sh:{run}:", f"~replay:sh:{run}:"
    shadow = await shadow_client(settings.redis_url, (prefix,), root)
    listener = redis_client.pubsub()
    await listener.psubscribe(f"*{run}*")
    await listener.get_message(timeout=1.0)  # the subscription's confirmation
    try:
        async with shadow.pipeline(transaction=False) as pipe:
            pipe.set(f"{prefix}k", "v")
            pipe.publish(f"chan:{run}", "hello")
            pipe.get(f"{prefix}k")
            pipe.publish(f"chan:{run}", "again")
            assert await pipe.execute() == [True, 0, "v", 0], "each reply where its command was"
        assert await shadow.publish(f"chan:{run}", "direct") == 0
        await asyncio.sleep(0.2)
        assert await listener.get_message(timeout=0.5) is None, "no announcement, on any channel"
        assert await redis_client.get(f"{root}{prefix}k") == "v" and not await redis_client.exists(f"{prefix}k")
        building = Context(settings=settings, pg=None, redis=shadow, publisher=None)  # type: ignore[arg-type]
        live = Context(settings=settings, pg=None, redis=redis_client, publisher=None)  # type: ignore[arg-type]
        assert not building.announcing and live.announcing, "handlers may skip preparing what is not sent"
        shadow.rewriter.enabled = False  # after the swap: the live names, and announcements again
        assert building.announcing
        assert await shadow.publish(f"chan:{run}", "live") == 1
        message = await listener.get_message(timeout=2.0)
        assert message is not None and message["data"] == "live"
    finally:
        await listener.aclose()
        await shadow.aclose()
        await redis_client.delete(f"{root}{prefix}k")


async def test_a_shadow_client_scans_the_shadow_keys_under_its_prefixes(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    run = new_id()
    prefix, root = f"sc:{run}:", f"~replay:sc:{run}:"
    await redis_client.set(f"{prefix}live", "x")
    shadow = await shadow_client(settings.redis_url, (prefix,), root)
    try:
        await shadow.set(f"{prefix}built", "y")
        found = [k async for k in shadow.scan_iter(match=f"{prefix}*")]
        assert found == [f"{root}{prefix}built"], "the shadow's keys, named as stored; not the live ones"
        assert await shadow.get(found[0]) == "y", "a name it listed reads the same key"
        assert [k async for k in shadow.scan_iter(match=f"other:{run}:*")] == []
        shadow.rewriter.enabled = False  # after the swap: the live names
        assert [k async for k in shadow.scan_iter(match=f"{prefix}*")] == [f"{prefix}live"]
    finally:
        await shadow.aclose()
        await redis_client.delete(f"{prefix}live", f"{root}{prefix}built")


# Holds Redis for ARGV[1] ms, then writes KEYS[1]: a command still in flight when a swap is asked for.
_SLOW_SET = """
local t = redis.call('TIME')
repeat local n = redis.call('TIME') until (n[1] - t[1]) * 1000000 + (n[2] - t[2]) >= tonumber(ARGV[1]) * 1000
return redis.call('SET', KEYS[1], 'slow')
"""


async def test_the_swap_waits_for_commands_in_flight_and_holds_new_ones_until_the_keys_moved(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    """A consumer's background task (trending's refresher) keeps running through a replay: each of its commands
    reaches the shadow before the swap, or the live keys after it; none is left in the swapped-out namespace."""
    run = new_id()
    prefix, root = f"sg:{run}:", f"~replay:sg:{run}:"
    shadow = await shadow_client(settings.redis_url, (prefix,), root)
    try:
        await shadow.set(f"{prefix}built", "shadow")
        queued = shadow.pipeline(transaction=False)
        queued.set(f"{prefix}queued", "late")  # queued now, executed after the swap
        in_flight = asyncio.create_task(shadow.eval(_SLOW_SET, 1, f"{prefix}slow", 300))
        await asyncio.sleep(0.05)
        async with shadow.gate.closed():
            assert in_flight.done(), "the swap starts once the command in flight is answered"
            during = asyncio.create_task(shadow.set(f"{prefix}during", "late"))
            await asyncio.sleep(0.1)
            assert not during.done(), "a command sent meanwhile waits"
            assert await swap(redis_client, (prefix,), root) == 2
            shadow.rewriter.enabled = False
        await during
        await queued.execute()
        assert await redis_client.mget(*(f"{prefix}{k}" for k in ("built", "slow", "queued", "during"))) == [
            "shadow",
            "slow",
            "late",
            "late",
        ]
        assert [k async for k in redis_client.scan_iter(match=f"{_glob_escape(root)}*")] == []
    finally:
        await shadow.aclose()
        async for key in redis_client.scan_iter(match=f"{prefix}*"):
            await redis_client.delete(key)
