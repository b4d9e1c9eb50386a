"""Who to follow: the suggestions consumer's rankings (through its handlers, in any order of the events) and
`GET /api/suggestions` end to end with every consumer running."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from chirp.settings import Settings
from consumers import suggestions as model
from consumers.runtime import Context
from schemas.events import FollowData, UserFollowed, UserUnfollowed, new_id
from tests.conftest import eventually
from tests.integration.helpers import login, unique_handle

T0 = datetime.now(UTC)


@pytest.fixture
def ctx(settings: Settings, pg: asyncpg.Pool, redis_client: aioredis.Redis) -> Context:
    return Context(settings=settings, pg=pg, redis=redis_client, publisher=None)  # type: ignore[arg-type]


def edge(a: str, b: str, seconds: int, *, on: bool = True) -> UserFollowed | UserUnfollowed:
    cls = UserFollowed if on else UserUnfollowed
    return cls(payload=FollowData(follower_id=a, followee_id=b), occurred_at=T0 + timedelta(seconds=seconds))


async def apply(ctx: Context, events: list[UserFollowed | UserUnfollowed]) -> None:
    for event in events:
        handler = model.on_followed if isinstance(event, UserFollowed) else model.on_unfollowed
        await handler(event, ctx)  # type: ignore[arg-type]


async def ranking(ctx: Context, user: str) -> list[tuple[str, int]]:
    found = await ctx.redis.zrevrange(model.rank_key(user), 0, -1, withscores=True)
    return sorted((c, int(s)) for c, s in found)


async def test_candidates_rank_by_followees_following_them_whatever_the_order_of_events(ctx: Context) -> None:
    me, a, b, x, y = (f"{name}-{new_id()}" for name in ("me", "a", "b", "x", "y"))
    events = [
        edge(me, a, 1),
        edge(me, b, 2),
        edge(a, x, 3),
        edge(b, x, 4),
        edge(a, y, 5),
        edge(b, me, 6),  # never suggest yourself
        edge(a, b, 7),  # nor whom you follow
        edge(b, y, 8),
        edge(b, y, 9, on=False),  # an unfollow undoes its follow
    ]
    await apply(ctx, events)
    assert await ranking(ctx, me) == [(x, 2), (y, 1)]
    assert sorted(await ctx.redis.smembers(model.via_key(me, x))) == sorted([a, b])
    # Redelivered, then in any other order (a replay reads topics and partitions interleaved): the same ranking.
    await apply(ctx, events)
    assert await ranking(ctx, me) == [(x, 2), (y, 1)]
    shuffled = list(events)
    random.Random(7).shuffle(shuffled)
    other = {n: f"{n}-{new_id()}" for n in (me, a, b, x, y)}
    renamed = [
        type(e)(
            payload=FollowData(follower_id=other[e.payload.follower_id], followee_id=other[e.payload.followee_id]),
            occurred_at=e.occurred_at,
        )
        for e in shuffled
    ]
    await apply(ctx, renamed)  # type: ignore[arg-type]
    assert await ranking(ctx, other[me]) == [(other[x], 2), (other[y], 1)]
    # Following a candidate removes it; unfollowing brings it back.
    await apply(ctx, [edge(me, x, 20)])
    assert await ranking(ctx, me) == [(y, 1)]
    await apply(ctx, [edge(me, x, 21, on=False)])
    assert await ranking(ctx, me) == [(x, 2), (y, 1)]


@pytest.mark.usefixtures("pipeline")
async def test_suggestions_through_the_api(client: httpx.AsyncClient, pg: asyncpg.Pool) -> None:
    me, a, b, c = (unique_handle(n) for n in ("me", "a", "b", "c"))
    headers = {h: await login(client, h) for h in (me, a, b, c)}
    registered = "SELECT count(*) FROM users WHERE lower(handle) = ANY($1::text[])"
    await eventually(lambda: pg.fetchval(registered, [me, a, b, c]), until=lambda n: n == 4, timeout=60)
    for follower, followee in ((me, a), (me, b), (a, c), (b, c), (a, b)):
        assert (await client.post(f"/api/users/{followee}/follow", headers=headers[follower])).status_code == 202

    async def found() -> list[dict]:
        response = await client.get("/api/suggestions", headers=headers[me], params={"limit": 5})
        assert response.status_code == 200, response.text
        return response.json()["items"]

    items = await eventually(found, until=lambda i: i and i[0]["count"] == 2, timeout=60)
    assert items == [
        {
            "handle": c,
            "display_name": c,
            "avatar_url": items[0]["avatar_url"],
            "count": 2,
            "followed_by": sorted([a, b]),
        }
    ]
    assert (await client.get("/api/suggestions")).status_code == 401
    assert (await client.get("/api/suggestions", headers=headers[me], params={"limit": 0})).status_code == 422
    # The home page's "Who to follow" box shows them, with whom they are followed by and a follow button.
    home = (await client.get("/", headers=headers[me])).text
    box = home[home.index('id="suggestions-title"') :]
    assert f'href="/@{c}"' in box and f'action="/@{c}/follow"' in box
    assert f'Followed by <a href="/@{min(a, b)}">@{min(a, b)}</a>, <a href="/@{max(a, b)}">' in box
    assert "Who to follow" not in (await client.get("/", headers=headers[c])).text  # nobody to suggest to c
