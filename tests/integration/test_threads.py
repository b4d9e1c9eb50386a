"""`GET /api/posts/{id}/thread`: the chain above a post (deleted links included) and the bounded reply tree below,
the original author's replies first, with `more` cursors that continue a level."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import httpx

from gateway.routes.threads import BREADTH
from schemas.events import new_id

START = datetime.now(UTC) - timedelta(hours=1)


class Posts:
    """Rows in the posts read model, in creation order (as the posts consumer writes them)."""

    def __init__(self, pg: asyncpg.Pool) -> None:
        self.pg = pg
        self.n = 0

    async def add(self, author: str, reply_to: str | None = None, *, deleted: bool = False) -> str:
        post_id = new_id()
        self.n += 1
        at = START + timedelta(seconds=self.n)
        await self.pg.execute(
            "INSERT INTO posts (post_id, author_id, body, html, text, reply_to, created_at, deleted_at)"
            " VALUES ($1, $2, $3, $3, $3, $4, $5, $6)",
            post_id,
            author,
            "" if deleted else f"post {self.n}",
            reply_to,
            at,
            at if deleted else None,
        )
        return post_id


async def thread(client: httpx.AsyncClient, post_id: str, **params: str) -> dict:
    response = await client.get(f"/api/posts/{post_id}/thread", params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def test_the_chain_above_a_post_holds_across_a_deleted_link(client: httpx.AsyncClient, pg: asyncpg.Pool) -> None:
    posts, op, bob, cat = Posts(pg), f"op-{new_id()}", f"bob-{new_id()}", f"cat-{new_id()}"
    root = await posts.add(op)
    a = await posts.add(bob, root)
    b = await posts.add(op, a, deleted=True)
    c = await posts.add(cat, b)
    d = await posts.add(bob, c)
    found = await thread(client, d)
    assert [p["id"] for p in found["ancestors"]] == [root, a, b, c]
    assert [p.get("deleted", False) for p in found["ancestors"]] == [False, False, True, False]
    assert found["post"]["id"] == d and found["replies"] == [] and found["more"] is None
    # From the root: the deleted link shows (live replies hang below it), the tree goes on through it.
    tree = await thread(client, root)
    [node_a] = tree["replies"]
    [node_b] = node_a["replies"]
    assert node_b["post"] == {"id": b, "deleted": True, "reply_to": a, "created_at": node_b["post"]["created_at"]}
    assert [n["post"]["id"] for n in node_b["replies"]] == [c]
    deepest = node_b["replies"][0]
    assert len(BREADTH) == 3 and deepest["replies"] == [] and deepest["more"]  # d lies below: a cursor to it
    more = await thread(client, c, cursor=deepest["more"])
    assert [n["post"]["id"] for n in more["replies"]] == [d]
    assert (await client.get(f"/api/posts/{b}/thread")).status_code == 404
    assert (await client.get(f"/api/posts/{root}/thread", params={"cursor": "bm9wZQ"})).status_code == 422


async def test_replies_come_original_author_first_then_oldest_first_bounded_with_cursors(
    client: httpx.AsyncClient, pg: asyncpg.Pool
) -> None:
    posts, op, fan = Posts(pg), f"op-{new_id()}", f"fan-{new_id()}"
    root = await posts.add(op)
    mixed = [await posts.add(author, root) for author in (fan, op, fan, op)]
    others = [await posts.add(fan, root) for _ in range(BREADTH[0] - 2)]
    first = await thread(client, root)
    expected = [mixed[1], mixed[3], mixed[0], mixed[2], *others]
    assert [n["post"]["id"] for n in first["replies"]] == expected[: BREADTH[0]]
    rest = await thread(client, root, cursor=first["more"])
    assert [n["post"]["id"] for n in rest["replies"]] == expected[BREADTH[0] :] and rest["more"] is None
    # The second level is bounded too, and its own cursor continues it (the root's author still first).
    under = [await posts.add(fan, mixed[0]) for _ in range(BREADTH[1] + 1)] + [await posts.add(op, mixed[0])]
    node = next(n for n in (await thread(client, root))["replies"] if n["post"]["id"] == mixed[0])
    assert [n["post"]["id"] for n in node["replies"]] == [under[-1], *under[: BREADTH[1] - 1]]
    tail = await thread(client, mixed[0], cursor=node["more"])
    assert [n["post"]["id"] for n in tail["replies"]] == under[BREADTH[1] - 1 : -1]


async def test_the_post_page_shows_the_chain_above_and_the_tree_below(
    client: httpx.AsyncClient, pg: asyncpg.Pool
) -> None:
    posts, op, bob = Posts(pg), f"op-{new_id()}", f"bob-{new_id()}"
    handle = f"op-{new_id()[-10:].lower()}"
    await pg.execute(
        "INSERT INTO users (user_id, handle, joined_at, profile_at) VALUES ($1, $2, now(), now())", op, handle
    )
    root = await posts.add(op)
    a = await posts.add(bob, root)
    b = await posts.add(op, a, deleted=True)
    c = await posts.add(bob, b)
    d = await posts.add(bob, c)
    e = await posts.add(op, d)
    page = await client.get(f"/posts/{c}")
    assert page.status_code == 200, page.text
    html = page.text
    chain = html[html.index("Earlier in the conversation") : html.index(f'id="post-{c}"')]
    assert [chain.index(f'id="post-{p}"') for p in (root, a, b)] == sorted(
        chain.index(f'id="post-{p}"') for p in (root, a, b)
    )
    assert "This post was deleted." in chain
    assert f'Replying to <a href="/posts/{root}">@{handle}</a>' in chain  # a, below root by op
    tree = html[html.index('id="replies"') :]
    assert f'id="post-{d}"' in tree and f'id="post-{e}"' in tree  # a reply to a reply is on the page
    assert tree.index(f'id="post-{d}"') < tree.index(f'id="post-{e}"')
