"""Profiles: the users projection (last writer wins, out of order, replays, unique handles) and its API."""

from __future__ import annotations

from itertools import permutations

import httpx
import pytest

from consumers import users
from schemas.events import (
    UserProfileSynced,
    UserProfileSyncedData,
    UserProfileUpdated,
    UserProfileUpdatedData,
    UserRegistered,
    new_id,
)
from tests.conftest import eventually
from tests.integration.helpers import unique_handle
from tests.integration.users_support import (
    api_user,
    at,
    ctx,
    logged_in,
    post,
    registered,
    user_row,
    wait_user,
)

__all__ = ["api_user", "ctx"]  # module fixtures
pytestmark = pytest.mark.usefixtures("pipeline")
HANDLERS = {
    UserRegistered: users.on_user_registered,
    UserProfileSynced: users.on_user_profile_synced,
    UserProfileUpdated: users.on_user_profile_updated,
}


def updated(user_id: str, when: float, **fields: str) -> UserProfileUpdated:
    return UserProfileUpdated(occurred_at=at(when), payload=UserProfileUpdatedData(user_id=user_id, **fields))


def synced(user_id: str, handle: str, when: float, **fields: str) -> UserProfileSynced:
    return UserProfileSynced(
        occurred_at=at(when), payload=UserProfileSyncedData(user_id=user_id, handle=handle, **fields)
    )


async def test_registration_is_projected_and_found_by_any_case(client: httpx.AsyncClient, publisher, pg) -> None:
    event = registered(display_name="Ada L", avatar_url="https://example.com/a.png", github_id=None)
    await publisher.publish(event)
    user_id, handle = event.payload.user_id, event.payload.handle
    await wait_user(pg, user_id)
    response = await client.get(f"/api/users/{handle.upper()}")
    assert response.status_code == 200
    assert response.json() == {
        "handle": handle,
        "display_name": "Ada L",
        "bio": "",
        "avatar_url": "https://example.com/a.png",
        "joined_at": event.occurred_at.isoformat(),
        "posts_count": 0,
        "followers_count": 0,
        "following_count": 0,
        "followed_by_me": False,
        "muted_by_me": False,
        "blocked_by_me": False,
    }


async def test_unknown_or_malformed_handle_is_404(client: httpx.AsyncClient) -> None:
    assert (await client.get(f"/api/users/{unique_handle()}")).status_code == 404
    assert (await client.get("/api/users/~placeholder")).status_code == 404
    assert (await client.get("/api/users/" + "a" * 40)).status_code == 404


async def test_older_profile_event_after_a_newer_one_changes_nothing(publisher, pg) -> None:
    reg = registered(when=0, display_name="First")
    user_id = reg.payload.user_id
    await publisher.publish(reg)
    await publisher.publish(updated(user_id, 20, display_name="Newest", bio="new bio"))
    await publisher.publish(updated(user_id, 10, display_name="Older", bio="old bio"))
    # Same topic and key, so handled after the older one: once the marker shows, the older one was handled too.
    await publisher.publish(updated(user_id, 40, bio="marker"))
    row = await wait_user(pg, user_id, until=lambda r: r["bio"] == "marker")
    assert row["display_name"] == "Newest"
    assert (row["display_name_at"], row["profile_at"]) == (at(20), at(40))


async def test_registration_after_a_profile_update_keeps_the_update(client: httpx.AsyncClient, publisher, pg) -> None:
    reg = registered(when=0, display_name="From GitHub", avatar_url="https://example.com/gh.png")
    user_id = reg.payload.user_id
    await publisher.publish(updated(user_id, 10, display_name="Chosen", bio="hello"))
    await wait_user(pg, user_id, until=lambda r: r["bio"] == "hello")
    await publisher.publish(reg)
    row = await wait_user(pg, user_id, until=lambda r: r["handle"] == reg.payload.handle)
    assert (row["display_name"], row["bio"]) == ("Chosen", "hello")
    assert row["avatar_url"] == "https://example.com/gh.png", "fields the update did not carry come from registration"
    assert row["joined_at"] == at(0)
    profile = (await client.get(f"/api/users/{reg.payload.handle}")).json()
    assert profile["display_name"] == "Chosen" and profile["joined_at"] == at(0).isoformat()


async def test_replayed_profile_events_leave_the_state_of_once(publisher, pg) -> None:
    reg = registered(when=0, display_name="Once")
    user_id = reg.payload.user_id
    events = [reg, updated(user_id, 10, bio="b1"), synced(user_id, reg.payload.handle, 20, display_name="Synced")]
    for event in events:
        await publisher.publish(event)
    once = await wait_user(pg, user_id, until=lambda r: r["display_name"] == "Synced" and r["bio"] == "b1")
    for event in events:  # the same events again (same ids), as a replay delivers them
        await publisher.publish(event)
    # One newer marker per topic (same key, so the same partition, behind the replayed event), each setting
    # only what it already holds but with a newer time: once all three show, every replayed event was handled.
    await publisher.publish(updated(user_id, 30, bio="b1"))
    await publisher.publish(synced(user_id, reg.payload.handle, 30, display_name="Synced"))
    await publisher.publish(registered(reg.payload.handle, when=30, user_id=user_id, display_name="Synced"))
    twice = await wait_user(
        pg, user_id, until=lambda r: (r["bio_at"], r["display_name_at"], r["handle_at"]) == (at(30), at(30), at(30))
    )
    timestamps = {"bio_at", "display_name_at", "handle_at", "avatar_at", "profile_at"}
    assert {k: v for k, v in twice.items() if k not in timestamps} == {
        k: v for k, v in once.items() if k not in timestamps
    }


@pytest.mark.parametrize("order", list(permutations(range(4))))
async def test_profile_events_in_any_order_give_one_state(ctx, pg, order) -> None:
    user_id, handle = f"u-{new_id()}", unique_handle()
    events = [
        registered(handle, when=0, user_id=user_id, display_name="GitHub", avatar_url="a0"),
        updated(user_id, 10, display_name="Chosen"),
        synced(user_id, handle, 20, display_name="GitHub 2", avatar_url="a2"),
        updated(user_id, 30, bio="bio"),
    ]
    for i in order:  # each event its own batch, as in single-event retries
        await HANDLERS[type(events[i])]([events[i]], ctx)
    await HANDLERS[UserProfileUpdated](events[1::2], ctx)  # and all again, replayed as one batch
    row = await user_row(pg, user_id)
    assert row is not None
    # GitHub's newer name and avatar arrive at 20, but the name the user chose at 10 stays: a chosen name
    # outranks GitHub's (the avatar still follows GitHub).
    assert (row["handle"], row["display_name"], row["avatar_url"], row["bio"]) == (handle, "Chosen", "a2", "bio")
    assert (row["joined_at"], row["profile_at"], row["display_name_chosen"]) == (at(0), at(30), True)


async def test_a_handle_goes_to_its_newest_claim(client: httpx.AsyncClient, publisher, pg) -> None:
    handle = unique_handle()
    old = registered(handle, when=0)
    new = registered(handle.upper(), when=10)  # another account, renamed on GitHub to the same login later
    await publisher.publish(new)
    await wait_user(pg, new.payload.user_id)
    await publisher.publish(old)
    loser = await wait_user(pg, old.payload.user_id)
    assert loser["handle"].startswith("~"), "the older claim lost the handle"
    assert (await client.get(f"/api/users/{handle}")).json()["handle"] == handle.upper()
    # The old account renames: its newer sync takes a fresh handle.
    fresh = unique_handle()
    await publisher.publish(synced(old.payload.user_id, fresh, 20))
    await wait_user(pg, old.payload.user_id, until=lambda r: r["handle"] == fresh)
    assert (await user_row(pg, new.payload.user_id))["handle"] == handle.upper()


async def test_patch_me_publishes_and_the_profile_follows(client: httpx.AsyncClient, pg) -> None:
    user_id, handle, headers = await logged_in(client, pg)
    response = await client.patch(
        "/api/me", json={"display_name": "  New Name  ", "bio": "I\nbuild things"}, headers=headers
    )
    assert response.status_code == 202
    assert response.json() == {"status": "accepted"}
    await wait_user(pg, user_id, until=lambda r: r["display_name"] == "New Name")
    profile = (await client.get(f"/api/users/{handle}")).json()
    assert (profile["display_name"], profile["bio"]) == ("New Name", "I\nbuild things")
    response = await client.patch("/api/me", json={"bio": ""}, headers=headers)
    assert response.status_code == 202
    await wait_user(pg, user_id, until=lambda r: r["bio"] == "")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body"),
        ({"display_name": ""}, "display_name"),
        ({"display_name": "   "}, "display_name"),
        ({"display_name": "x" * 51}, "display_name"),
        ({"display_name": "bell\x07"}, "display_name"),
        ({"display_name": "two\nlines"}, "display_name"),
        ({"display_name": "evil\u202etxt"}, "display_name"),
        ({"display_name": 42}, "display_name"),
        ({"bio": "x" * 161}, "bio"),
        ({"bio": None}, "bio"),
        ({"bio": "nul\x00"}, "bio"),
        ({"handle": "other"}, "handle"),
        ({"display_name": "ok", "avatar_url": "https://x"}, "avatar_url"),
    ],
)
async def test_patch_me_rejects_bad_input_naming_the_field(client: httpx.AsyncClient, api_user, body, field) -> None:
    response = await client.patch("/api/me", json=body, headers=api_user[2])
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field


async def test_patch_me_needs_a_login(client: httpx.AsyncClient) -> None:
    assert (await client.patch("/api/me", json={"bio": "x"})).status_code == 401


async def test_bio_of_160_and_name_of_50_are_accepted(client: httpx.AsyncClient, pg) -> None:
    user_id, _, headers = await logged_in(client, pg)
    response = await client.patch("/api/me", json={"display_name": "n" * 50, "bio": "é" * 160}, headers=headers)
    assert response.status_code == 202
    await wait_user(pg, user_id, until=lambda r: r["bio"] == "é" * 160 and r["display_name"] == "n" * 50)


async def test_posts_count_counts_live_posts(client: httpx.AsyncClient, pg) -> None:
    _, handle, headers = await logged_in(client, pg)
    ids = [await post(client, headers, f"post {i}") for i in range(3)]
    assert (await client.delete(f"/api/posts/{ids[0]}", headers=headers)).status_code == 202

    async def count() -> int:
        return (await client.get(f"/api/users/{handle}")).json()["posts_count"]

    await eventually(count, until=lambda n: n == 2)
