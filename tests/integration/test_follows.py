"""Follows: the API commands, exact counts under duplicates, replays and out-of-order events, and the lists."""

from __future__ import annotations

import asyncio
import random
from itertools import permutations

import httpx
import pytest

from consumers import users
from tests.conftest import eventually
from tests.integration.helpers import unique_handle
from tests.integration.users_support import (
    api_user,
    ctx,
    follow_event,
    logged_in,
    registered,
    user_row,
    wait_user,
)

__all__ = ["api_user", "ctx"]  # module fixtures
pytestmark = pytest.mark.usefixtures("pipeline")


async def counts(pg, *user_ids: str) -> list[tuple[int, int]]:
    rows = [await user_row(pg, u) for u in user_ids]
    return [(r["followers_count"], r["following_count"]) if r else (-1, -1) for r in rows]


async def new_users(ctx, n: int) -> list[str]:
    events = [registered() for _ in range(n)]
    await users.on_user_registered(events, ctx)
    return [e.payload.user_id for e in events]


async def apply(ctx, events) -> None:
    """Hand events to the consumer's handlers one topic batch at a time, in the order given."""
    for event in events:
        handler = users.on_user_followed if type(event).__name__ == "UserFollowed" else users.on_user_unfollowed
        await handler([event], ctx)


async def test_follow_and_unfollow_through_the_api(client: httpx.AsyncClient, pg) -> None:
    a, _, a_headers = await logged_in(client, pg, "fa")
    b, b_handle, _ = await logged_in(client, pg, "fb")
    c, c_handle, _ = await logged_in(client, pg, "fc")
    for _ in range(2):  # twice: still one follow
        response = await client.post(f"/api/users/{b_handle}/follow", headers=a_headers)
        assert response.status_code == 202 and response.json() == {"status": "accepted"}
    await client.post(f"/api/users/{c_handle.upper()}/follow", headers=a_headers)  # behind both, same partition
    await wait_user(pg, a, until=lambda r: r["following_count"] == 2)
    assert await counts(pg, a, b, c) == [(0, 2), (1, 0), (1, 0)]
    profile = (await client.get(f"/api/users/{b_handle}", headers=a_headers)).json()
    assert profile["followed_by_me"] is True and profile["followers_count"] == 1
    assert (await client.get(f"/api/users/{b_handle}")).json()["followed_by_me"] is False

    assert (await client.delete(f"/api/users/{b_handle}/follow", headers=a_headers)).status_code == 202
    await wait_user(pg, a, until=lambda r: r["following_count"] == 1)
    assert await counts(pg, b) == [(0, 0)]
    assert (await client.get(f"/api/users/{b_handle}", headers=a_headers)).json()["followed_by_me"] is False


async def test_follow_rules(client: httpx.AsyncClient, api_user) -> None:
    _, handle, headers = api_user
    for method in ("POST", "DELETE"):
        response = await client.request(method, f"/api/users/{handle}/follow", headers=headers)
        assert response.status_code == 422 and response.json()["error"]["field"] == "handle"
        response = await client.request(method, f"/api/users/{handle.upper()}/follow", headers=headers)
        assert response.status_code == 422, "yourself, in any case"
        assert (
            await client.request(method, f"/api/users/{unique_handle()}/follow", headers=headers)
        ).status_code == 404
        assert (await client.request(method, f"/api/users/{handle}/follow")).status_code == 401


@pytest.mark.parametrize("order", list(permutations(range(4))))
async def test_counts_are_exact_in_any_order_with_duplicates(ctx, pg, order) -> None:
    a, b, c = await new_users(ctx, 3)
    events = [
        follow_event(a, b, active=True, when=1),
        follow_event(a, b, active=False, when=2),
        follow_event(a, b, active=True, when=3),
        follow_event(c, b, active=True, when=1),
    ]
    await apply(ctx, [events[i] for i in order])
    assert await counts(pg, a, b, c) == [(0, 1), (2, 0), (0, 1)]
    await apply(ctx, events + events[::-1])  # replayed, twice over, both ways
    assert await counts(pg, a, b, c) == [(0, 1), (2, 0), (0, 1)]
    await users.on_user_followed([events[0], events[2], events[3], events[2]], ctx)  # duplicates in one batch
    assert await counts(pg, a, b, c) == [(0, 1), (2, 0), (0, 1)]
    row = await pg.fetchrow("SELECT active, changed_at FROM follows WHERE follower_id = $1 AND followee_id = $2", a, b)
    assert (row["active"], row["changed_at"]) == (True, events[2].occurred_at)


async def test_counts_are_exact_when_batches_over_the_same_users_run_at_once(ctx, pg) -> None:
    """Counts move by deltas: writers of the same users at once (two group members) must not count a change twice."""
    fans = await new_users(ctx, 12)
    star, other = fans[:2]
    rng = random.Random(7)
    pairs = [(f, t) for f in fans for t in (star, other)]
    events = [follow_event(f, t, active=rng.random() < 0.7, when=rng.randint(1, 6)) for f, t in pairs for _ in "ab"]
    batches = [rng.sample(events, 10) for _ in range(32)]  # overlapping, duplicated, out of order
    await asyncio.gather(*(users.on_user_followed(b, ctx) for b in batches))  # each event's class says its side
    truth = await pg.fetch("SELECT follower_id, followee_id FROM follows WHERE active")
    for user in fans:
        expected = (sum(r["followee_id"] == user for r in truth), sum(r["follower_id"] == user for r in truth))
        assert (await counts(pg, user))[0] == expected


async def test_counts_through_kafka_with_replays_and_reordering(ctx, publisher, pg) -> None:
    a, b, c = await new_users(ctx, 3)
    events = [
        follow_event(a, b, active=False, when=5),  # the newest first
        follow_event(a, b, active=True, when=1),
        follow_event(a, c, active=True, when=2),
        follow_event(a, b, active=True, when=1),  # duplicate
        follow_event(a, c, active=False, when=1),  # older than the follow of c
    ]
    for event in events + events:
        await publisher.publish(event)
    # Markers behind everything above on both topics (same key, same partitions): a's followee d, followed and
    # then unfollowed, changes nothing but shows both topics were read that far.
    (d,) = await new_users(ctx, 1)
    await publisher.publish(follow_event(a, d, active=True, when=10))
    await publisher.publish(follow_event(a, d, active=False, when=11))

    async def settled() -> bool:
        row = await pg.fetchrow("SELECT active FROM follows WHERE follower_id = $1 AND followee_id = $2", a, d)
        return row is not None and not row["active"] and (await counts(pg, a))[0] == (0, 1)

    await eventually(settled, timeout=60)
    followed = await pg.fetchval("SELECT active FROM follows WHERE follower_id = $1 AND followee_id = $2", a, d)
    assert followed is False
    assert await counts(pg, a, b, c, d) == [(0, 1), (0, 0), (1, 0), (0, 0)]


async def test_registration_after_follows_starts_with_exact_counts(ctx, pg) -> None:
    a, b = f"u-late-{unique_handle()}", f"u-late-{unique_handle()}"
    await apply(ctx, [follow_event(a, b, active=True, when=1)])
    assert await user_row(pg, a) is None
    await users.on_user_registered([registered(user_id=a), registered(user_id=b)], ctx)
    assert await counts(pg, a, b) == [(0, 1), (1, 0)]


async def test_a_registration_counts_a_follow_committed_while_it_runs(ctx, pg) -> None:
    """A follow written while the user's row is being created (two group members) is in the new row's count: the
    registration waits for the follow's transaction instead of counting without it."""
    fan, user = f"u-fan-{unique_handle()}", f"u-new-{unique_handle()}"
    async with pg.acquire() as follow_writer:
        tx = follow_writer.transaction()
        await tx.start()
        await follow_writer.execute("LOCK TABLE follows IN ROW EXCLUSIVE MODE")  # as apply_follows does
        await follow_writer.execute("INSERT INTO follows VALUES ($1, $2, true, now())", fan, user)
        registering = asyncio.create_task(users.on_user_registered([registered(user_id=user)], ctx))
        await asyncio.sleep(0.3)
        assert not registering.done(), "the registration waits for the follow being written"
        await tx.commit()
    await registering
    assert await counts(pg, user) == [(1, 0)]


async def test_followers_and_following_pages(client: httpx.AsyncClient, ctx, pg) -> None:
    star, *fans = await new_users(ctx, 6)
    await apply(ctx, [follow_event(fan, star, active=True, when=i) for i, fan in enumerate(fans)])
    await apply(ctx, [follow_event(fans[0], fan, active=True, when=10 + i) for i, fan in enumerate(fans[1:])])
    star_handle = (await user_row(pg, star))["handle"]
    handles = {u: (await user_row(pg, u))["handle"] for u in fans}

    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        response = await client.get(f"/api/users/{star_handle}/followers", params=params)
        assert response.status_code == 200
        body = response.json()
        pages += 1
        seen += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert [i["handle"] for i in seen] == [handles[f] for f in reversed(fans)], "newest follow first"
    assert seen[-1] == {"handle": handles[fans[0]], "display_name": "", "avatar_url": "", "followers_count": 0}

    body = (await client.get(f"/api/users/{handles[fans[0]].upper()}/following", params={"limit": 100})).json()
    assert [i["handle"] for i in body["items"]] == [handles[f] for f in reversed(fans[1:])] + [star_handle]
    assert body["next_cursor"] is None
    assert (await client.get(f"/api/users/{star_handle}/following")).json() == {"items": [], "next_cursor": None}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=x", "limit"),
        ("cursor=nope", "cursor"),
        ("cursor=WyJ4Il0", "cursor"),
    ],
)
async def test_follow_lists_reject_bad_paging(client: httpx.AsyncClient, api_user, query, field) -> None:
    response = await client.get(f"/api/users/{api_user[1]}/followers?{query}")
    assert response.status_code == 422 and response.json()["error"]["field"] == field


async def test_follow_lists_of_unknown_users_are_404(client: httpx.AsyncClient) -> None:
    for which in ("followers", "following"):
        assert (await client.get(f"/api/users/{unique_handle()}/{which}")).status_code == 404
