"""The Redis half of a replay's swap: shadow keys take the live names in one script, stale live keys go."""

from __future__ import annotations

import redis.asyncio as aioredis

from chirp.ops._shadow_redis import swap
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
