"""The posts API end to end: gateway in-process, every consumer running (`pipeline`), real Kafka/PostgreSQL/Redis."""

from __future__ import annotations

import subprocess
from typing import Any

import httpx
import pytest

from gateway.cursors import post_cursor
from schemas.events import new_id
from tests.conftest import eventually
from tests.corpora import corpus, missing
from tests.integration.helpers import login, unique_handle
from tests.integration.posts_support import status_of
from tests.unit.htmlsafety import assert_safe_html

# Public XSS payloads (PayloadsAllTheThings), in the shared corpora.
XSS_QUICK = corpus("xss") / "payloadsallthethings" / "xss_payloads_quick.txt"

pytestmark = pytest.mark.usefixtures("pipeline")


@pytest.fixture
async def author(client: httpx.AsyncClient) -> tuple[str, dict[str, str]]:
    """A fresh logged-in user: (handle, auth headers)."""
    handle = unique_handle("p")
    return handle, await login(client, handle)


async def projected(client: httpx.AsyncClient, handle: str) -> None:
    """Wait until the users consumer has projected `handle` (the user-registered of the dev login)."""
    await eventually(lambda: status_of(client, f"/api/users/{handle}/posts"), until=lambda s: s == 200, timeout=60)


async def create(client: httpx.AsyncClient, headers: dict[str, str], body: str, **extra: Any) -> str:
    response = await client.post("/api/posts", json={"body": body, **extra}, headers=headers)
    assert response.status_code == 202, response.text
    post_id = response.json()["id"]
    assert response.json() == {"id": post_id, "status": "accepted"}
    assert response.headers["location"] == f"/api/posts/{post_id}"
    return post_id


async def visible(client: httpx.AsyncClient, post_id: str) -> dict[str, Any]:
    response = await eventually(lambda: client.get(f"/api/posts/{post_id}"), until=lambda r: r.status_code == 200)
    return response.json()


async def ids(client: httpx.AsyncClient, url: str) -> list[str]:
    response = await client.get(url)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


async def test_a_post_is_accepted_then_visible_with_safe_html(client, author) -> None:
    handle, headers = author
    body = "Hello **#Chirp** <script>alert(1)</script> [x](javascript:alert(1)) <img src=x onerror=alert(1)> @bob"
    post_id = await create(client, headers, body)
    await projected(client, handle)
    post = await visible(client, post_id)
    assert post["id"] == post_id and post["body"] == body and post["reply_to"] is None and post["reply_count"] == 0
    assert post["author"] == {"handle": handle, "display_name": handle, "avatar_url": ""}
    me = (await client.get("/api/me", headers=headers)).json()
    assert post["author_id"] == me["user_id"] and handle not in me["user_id"], "user ids are opaque"
    assert post["hashtags"] == ["chirp"] and post["mentions"] == ["bob"]
    assert_safe_html(post["html"])
    assert '<strong><a href="/tags/chirp" class="hashtag">#Chirp</a></strong>' in post["html"]
    assert "alert(1)" in post["text"] and post["created_at"].startswith("20")


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"body": ""}, "body"),
        ({"body": "  \n\t "}, "body"),
        ({"body": "x" * 2001}, "body"),
        ({"body": "a\u0000b"}, "body"),
        ({"body": "ok", "reply_to": "01NOSUCHPOST0000000000000"}, "reply_to"),
        ({}, "body"),
    ],
)
async def test_invalid_posts_are_422_naming_the_field(client, author, payload, field) -> None:
    response = await client.post("/api/posts", json=payload, headers=author[1])
    assert response.status_code == 422
    assert response.json()["error"]["field"] == field


@pytest.mark.skipif(not XSS_QUICK.exists(), reason=missing("xss"))
async def test_xss_payloads_come_back_safe(client, author) -> None:
    _, headers = author
    payloads = [line for line in XSS_QUICK.read_text().splitlines() if line.strip()]
    posted = [await create(client, headers, payload[:2000]) for payload in payloads]
    for post_id in posted:
        assert_safe_html((await visible(client, post_id))["html"])


async def test_2000_characters_are_fine(client, author) -> None:
    await create(client, author[1], "é" * 2000)


async def test_anonymous_writes_are_401(client) -> None:
    assert (await client.post("/api/posts", json={"body": "hi"})).status_code == 401
    assert (await client.delete(f"/api/posts/{new_id()}")).status_code == 401


async def test_an_idempotency_key_gives_one_post(client, author) -> None:
    handle, headers = author
    key = {"Idempotency-Key": f"k-{new_id()}"}
    first = await create(client, {**headers, **key}, "once")
    again = await create(client, {**headers, **key}, "once")
    assert again == first
    other = await create(client, {**headers, "Idempotency-Key": f"k-{new_id()}"}, "once")
    assert other != first
    conflict = await client.post("/api/posts", json={"body": "changed"}, headers={**headers, **key})
    assert conflict.status_code == 409 and conflict.json()["error"]["field"] == "Idempotency-Key"
    bad = await client.post("/api/posts", json={"body": "x"}, headers={**headers, "Idempotency-Key": "a b"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "Idempotency-Key"
    await visible(client, other)
    await visible(client, first)
    await projected(client, handle)
    assert sorted(await ids(client, f"/api/users/{handle}/posts")) == sorted([first, other])
    assert await create(client, {**headers, **key}, "once") == first, "a retry after projection: same id"


async def test_prefer_wait_answers_once_the_author_can_see_the_post(client, author) -> None:
    handle, headers = author
    await projected(client, handle)
    await visible(client, await create(client, headers, "warm-up"))
    applied = 0
    for i in range(3):
        response = await client.post("/api/posts", json={"body": f"now {i}"}, headers={**headers, "Prefer": "wait"})
        assert response.status_code == 202
        if response.headers.get("preference-applied") == "wait":
            applied += 1  # then it is in every list at once, no waiting
            post_id = response.json()["id"]
            assert post_id in await ids(client, f"/api/users/{handle}/posts")
            assert post_id in await ids(client, "/api/posts?limit=100")
    assert applied >= 1, "the pipeline projects a post within the one-second bound"


async def test_lists_page_with_stable_cursors(client, author) -> None:
    handle, headers = author
    posted = [await create(client, headers, f"post {i}") for i in range(5)]
    for post_id in posted:
        await visible(client, post_id)
    # Everyone's posts, from just above our newest: our five come back in order, each once, whatever is
    # inserted between pages.
    seen: list[str] = []
    cursor = post_cursor(posted[-1] + "0")  # sorts right after posted[-1]: the page starts there
    while posted[0] not in seen:
        response = (await client.get(f"/api/posts?limit=2&cursor={cursor}")).json()
        seen += [item["id"] for item in response["items"]]
        await create(client, headers, "inserted meanwhile")
        cursor = response["next_cursor"]
    assert len(seen) == len(set(seen)) and seen == sorted(seen, reverse=True)
    assert [i for i in seen if i in posted] == posted[::-1]
    assert len(await ids(client, "/api/posts")) == min(20, len(await ids(client, "/api/posts?limit=21")))
    # One user's posts.
    await projected(client, handle)
    first = (await client.get(f"/api/users/{handle}/posts?limit=3")).json()
    second = (await client.get(f"/api/users/{handle}/posts?limit=100&cursor={first['next_cursor']}")).json()
    mine = [i["id"] for i in first["items"] + second["items"]]
    assert mine[-5:] == posted[::-1] and len(mine) == len(set(mine)) and second["next_cursor"] is None


@pytest.mark.parametrize(
    ("query", "field"), [("limit=0", "limit"), ("limit=101", "limit"), ("limit=x", "limit"), ("cursor=%%%", "cursor")]
)
async def test_bad_page_parameters_are_422(client, query, field) -> None:
    for url in ("/api/posts", "/api/tags/x/posts"):
        response = await client.get(f"{url}?{query}")
        assert response.status_code == 422 and response.json()["error"]["field"] == field


async def test_replies_are_listed_oldest_first_and_counted(client, author) -> None:
    _, headers = author
    parent = await create(client, headers, "parent")
    await visible(client, parent)
    replies = [await create(client, headers, f"reply {i}", reply_to=parent) for i in range(3)]
    for reply in replies:
        assert (await visible(client, reply))["reply_to"] == parent
    assert (await client.get(f"/api/posts/{parent}")).json()["reply_count"] == 3
    assert await ids(client, f"/api/posts/{parent}/replies") == replies
    page = (await client.get(f"/api/posts/{parent}/replies?limit=2")).json()
    rest = await ids(client, f"/api/posts/{parent}/replies?limit=2&cursor={page['next_cursor']}")
    assert [i["id"] for i in page["items"]] + rest == replies
    assert (await client.get(f"/api/posts/{new_id()}/replies")).status_code == 404


async def test_tag_lists_match_any_case(client, author) -> None:
    _, headers = author
    tag = f"Tag{new_id()[-8:]}"
    tagged = await create(client, headers, f"about #{tag} and #other")
    untagged = await create(client, headers, f"not about {tag}")
    await visible(client, tagged)
    await visible(client, untagged)
    assert await ids(client, f"/api/tags/{tag.lower()}/posts") == [tagged]
    assert await ids(client, f"/api/tags/%23{tag.upper()}/posts") == [tagged]


async def test_unknown_things_are_404(client) -> None:
    assert (await client.get(f"/api/posts/{new_id()}")).status_code == 404
    assert (await client.get(f"/api/users/{unique_handle()}/posts")).status_code == 404


async def test_the_author_deletes_a_post_from_every_list(client, author) -> None:
    handle, headers = author
    tag = f"gone{new_id()[-8:].lower()}"
    parent = await create(client, headers, "parent")
    await visible(client, parent)
    doomed = await create(client, headers, f"soon gone #{tag}", reply_to=parent)
    await visible(client, doomed)
    await projected(client, handle)
    response = await client.delete(f"/api/posts/{doomed}", headers=headers)
    assert response.status_code == 202 and response.json() == {"id": doomed, "status": "accepted"}
    await eventually(lambda: status_of(client, f"/api/posts/{doomed}"), until=lambda s: s == 404)
    assert doomed not in await ids(client, f"/api/users/{handle}/posts")
    assert doomed not in await ids(client, "/api/posts?limit=100")
    assert await ids(client, f"/api/tags/{tag}/posts") == []
    assert await ids(client, f"/api/posts/{parent}/replies") == []
    assert (await client.get(f"/api/posts/{parent}")).json()["reply_count"] == 0
    assert (await client.delete(f"/api/posts/{doomed}", headers=headers)).status_code == 404


async def test_only_the_author_may_delete(client, author) -> None:
    _, headers = author
    post_id = await create(client, headers, "mine")
    await visible(client, post_id)
    other = await login(client, unique_handle("o"))
    assert (await client.delete(f"/api/posts/{post_id}", headers=other)).status_code == 403
    assert (await client.get(f"/api/posts/{post_id}")).status_code == 200


async def test_delete_with_prefer_wait_is_gone_on_return(client, author) -> None:
    _, headers = author
    post_id = await create(client, headers, "brief")
    await visible(client, post_id)
    response = await client.delete(f"/api/posts/{post_id}", headers={**headers, "Prefer": "wait"})
    assert response.status_code == 202
    if response.headers.get("preference-applied") == "wait":
        assert (await client.get(f"/api/posts/{post_id}")).status_code == 404


def test_pipeline_is_running(pipeline: subprocess.Popen[bytes]) -> None:
    assert pipeline.poll() is None, "the consumers' process is still up after the tests above"
