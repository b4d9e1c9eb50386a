"""Repost, like, bookmark and quote in the web UI without JavaScript: forms that post with the CSRF token and come
back (303) to the same place, counts and states on every card, "↻ Name reposted", the bookmarks page."""

from __future__ import annotations

from typing import Any

import httpx

from schemas.events import new_id
from tests.conftest import eventually
from tests.integration.helpers import unique_handle
from tests.integration.test_pages import HTML, assert_accessible, browser_login, csrf, parse, post_form, tags


def card(text: str, post_id: str) -> Any:
    [found] = [a for a in tags(parse(text), "article") if a.get("id") == f"post-{post_id}"]
    return found


def control(article: Any, kind: str) -> tuple[str, str]:
    """(aria-pressed, text) of a card's button for `kind`."""
    [form] = [f for f in article.iter() if f.tag.endswith("form") and f.get("data-interact") == kind]
    [button] = [b for b in form.iter() if b.tag.endswith("button")]
    return button.get("aria-pressed"), "".join(button.itertext()).split()[1]


async def test_repost_like_bookmark_and_quote_as_forms(client: httpx.AsyncClient, pipeline: Any) -> None:
    author = unique_handle("wa")
    await browser_login(client, author)
    response = await post_form(client, "/compose", {"body": "a post to like " + new_id(), "next": "/"})
    assert response.status_code == 303
    post_id = client.cookies.get("chirp_posted")
    fan = unique_handle("wf")
    await browser_login(client, fan)
    await post_form(client, f"/@{author}/follow", {"next": "/"})

    page = f"/posts/{post_id}"
    for kind in ("like", "repost", "bookmark"):
        response = await client.post(
            f"/posts/{post_id}/{kind}",
            data={"csrf_token": csrf(client), "on": "1"},
            headers={**HTML, "Referer": f"http://127.0.0.1:8000{page}?x=1"},
        )
        assert response.status_code == 303, response.text
        assert response.headers["location"] == f"{page}?x=1#post-{post_id}", "back where it was"
    article = card((await client.get(page, headers=HTML)).text, post_id)
    assert control(article, "like") == ("true", "1") and control(article, "repost") == ("true", "1")
    assert control(article, "bookmark")[0] == "true"

    async def home() -> str:
        return (await client.get("/", headers=HTML)).text

    text = await eventually(home, until=lambda t: f"post-{post_id}" in t)
    assert "reposted" in "".join(card(text, post_id).itertext()), "↻ Name reposted"
    bookmarks = await client.get("/bookmarks", headers=HTML)
    assert bookmarks.status_code == 200 and f"post-{post_id}" in bookmarks.text
    assert_accessible(bookmarks.text)

    response = await post_form(client, f"/posts/{post_id}/like", {"on": "0", "next": page})
    assert response.status_code == 303
    assert control(card((await client.get(page, headers=HTML)).text, post_id), "like") == ("false", "0")

    # Quote: the action opens the composer with the post embedded; the quote shows it as a card
    composer = (await client.get(f"/?quote_of={post_id}", headers=HTML)).text
    assert f'name="quote_of" value="{post_id}"' in composer and 'class="quoted"' in composer
    response = await post_form(client, "/compose", {"body": "quoting it", "quote_of": post_id, "next": "/"})
    assert response.status_code == 303
    quote_id = client.cookies.get("chirp_posted")

    async def quote_page() -> str:
        return (await client.get(f"/posts/{quote_id}", headers=HTML)).text

    text = await eventually(quote_page, until=lambda t: 'class="quoted"' in t)
    assert f'href="/posts/{post_id}"' in text
    client.cookies.clear()
    assert (await client.get("/bookmarks", headers=HTML)).status_code == 303, "visitors log in first"
