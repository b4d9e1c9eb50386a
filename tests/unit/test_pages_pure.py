"""Pure parts of the web UI: times, safe redirects, sparklines, snippets, live feeds and the relay's replay buffer."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from starlette.requests import Request

from chirp.settings import Settings
from gateway.errors import InvalidInput
from gateway.pages.explore import snippet_html, sparkline
from gateway.pages.flash import FLASH_COOKIE, flash_text
from gateway.pages.live import Feed, Notice, Relay, parse_feed, shows
from gateway.pages.security import HEADERS, response_headers
from gateway.pages.templating import ENV, exact_time, iso_time, reltime
from gateway.pages.web import local_path
from store.interactions import Counts

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("ago", "shown"),
    [
        (timedelta(seconds=10), "now"),
        (timedelta(minutes=5), "5m"),
        (timedelta(hours=3, minutes=59), "3h"),
        (timedelta(days=2), "2d"),
        (timedelta(days=20), "Feb 18"),
        (timedelta(days=400), "Feb 3, 2025"),
    ],
)
def test_relative_times(ago: timedelta, shown: str) -> None:
    assert reltime(NOW - ago, now=NOW) == shown


def test_exact_and_machine_times_accept_the_api_strings() -> None:
    assert iso_time("2026-03-10T12:00:00+00:00") == "2026-03-10T12:00:00Z"
    assert exact_time("2026-03-10T13:30:05+01:00") == "2026-03-10 12:30:05 UTC"
    assert reltime(None) == "" and iso_time("") == ""


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/posts/1", "/posts/1"),
        ("/@ada?x=1#y", "/@ada?x=1#y"),
        ("//evil.test/", "/"),
        ("/\\evil.test", "/"),
        ("https://evil.test/", "/"),
        ("javascript:alert(1)", "/"),
        ("/a\r\nSet-Cookie: x", "/"),
        ("", "/"),
        (None, "/"),
    ],
)
def test_redirect_targets_stay_on_this_site(value: object, expected: str) -> None:
    assert local_path(value) == expected


def test_sparkline_scales_values_into_the_box() -> None:
    spark = sparkline([0, 5, 10], width=100, height=20, pad=0)
    assert spark is not None
    assert spark.points == "0.0,20.0 50.0,10.0 100.0,0.0"
    assert "peak 10" in spark.summary
    flat = sparkline([3, 3], width=10, height=10, pad=0)
    assert flat is not None and flat.points == "0.0,10.0 10.0,10.0"
    assert sparkline([1]) is None and sparkline([]) is None


def test_snippets_keep_only_mark() -> None:
    raw = '<mark>hit</mark> <script>x()</script><a href="javascript:x">a</a> <b onclick="x">b</b>'
    assert snippet_html(raw) == "<mark>hit</mark> a b"


def test_templates_escape_everything_but_the_sanitized_html() -> None:
    html = ENV.from_string("{{ text }} {{ html | safe }}").render(text="<b>x</b>", html="<b>y</b>")
    assert html == "&lt;b&gt;x&lt;/b&gt; <b>y</b>"


def test_security_headers_are_added_without_replacing_a_route_s_own() -> None:
    headers = response_headers([(b"x-frame-options", b"SAMEORIGIN")], False)
    names = [name for name, _ in headers]
    assert names.count(b"x-frame-options") == 1 and len(headers) == len(HEADERS)
    assert "script-src 'self'" in HEADERS["Content-Security-Policy"]
    assert "unsafe-inline" not in HEADERS["Content-Security-Policy"]


@pytest.mark.parametrize(
    ("raw", "feed"),
    [
        ("all", Feed("all")),
        ("home", Feed("home")),
        ("user:u1", Feed("user", "u1")),
        ("tag:Café", Feed("tag", "café")),
        ("bell", Feed("bell")),
    ],
)
def test_feeds_parse(raw: str, feed: Feed) -> None:
    assert parse_feed(raw) == feed


@pytest.mark.parametrize("raw", ["", "everything", "user:", "all:x", "home:u1", "bell:u1", "replies:" + "x" * 101])
def test_bad_feeds_are_refused(raw: str) -> None:
    with pytest.raises(InvalidInput):
        parse_feed(raw)


def _notice(seq: int, author: str = "a", reply_to: str | None = None, tags: tuple[str, ...] = ()) -> Notice:
    return Notice(seq, f"b.{seq}", f"p{seq}", author, reply_to, tags)


def test_which_feeds_show_a_post() -> None:
    post = _notice(1, author="a", reply_to="p0", tags=("café",))
    assert shows(Feed("all"), post)
    assert shows(Feed("home"), post, frozenset({"a"})) and not shows(Feed("home"), post, frozenset({"b"}))
    assert shows(Feed("user", "a"), post) and not shows(Feed("user", "b"), post)
    assert shows(Feed("replies", "p0"), post) and not shows(Feed("replies", "p9"), post)
    assert shows(Feed("tag", "café"), post) and not shows(Feed("tag", "cafe"), post)
    deleted = Notice(2, "b.2", "p2", "a", None, (), deleted=True)
    bell = Notice(3, "b.3", "", "", None, (), recipient="u1", unread=4)
    assert not shows(Feed("bell"), post) and not shows(Feed("bell"), deleted), "a bell stream carries the bell only"
    assert shows(Feed("bell"), bell, viewer_id="u1") and not shows(Feed("bell"), bell, viewer_id="u2")
    counts = Notice(4, "b.4", "p0", "", None, (), counts={"like_count": 1, "repost_count": 0, "quote_count": 0})
    assert shows(Feed("replies", "p0"), counts), "the page of that post"
    assert not any(shows(f, counts, frozenset({""})) for f in (Feed("replies", "p9"), Feed("all"), Feed("home")))


def _relay(keep: int = 3) -> Relay:
    relay = Relay(Settings(), keep=keep)
    relay.boot = "b"
    return relay


def _say(relay: Relay, post_id: str) -> None:
    relay.dispatch(orjson.dumps({"id": post_id, "author_id": "a", "reply_to": None, "hashtags": ["x"]}))


def test_the_relay_numbers_buffers_and_replays_notices() -> None:
    relay = _relay(keep=3)
    listener = relay.listen_without_task()
    for post_id in ("p1", "p2", "p3", "p4"):
        _say(relay, post_id)
    assert relay.position == "b.4"
    assert [n.post_id for n in relay.buffer] == ["p2", "p3", "p4"]
    assert listener.queue.qsize() == 4
    replay = relay.since("b.2")
    assert replay is not None and [n.event_id for n in replay] == ["b.3", "b.4"]
    assert relay.since("b.4") == []
    assert relay.since("b.1") == [n for n in relay.buffer]  # b.2 onwards: nothing missing
    assert relay.since("b.0") is None  # p1 was evicted
    assert relay.since("other.3") is None and relay.since("b.9") is None and relay.since("junk") is None


def test_a_gap_in_the_subscription_forces_a_resync() -> None:
    relay = _relay(keep=10)
    _say(relay, "p1")
    relay.complete_after = relay.seq  # resubscribed after Redis was away: notices may be missing before this
    _say(relay, "p2")
    assert relay.since("b.0") is None
    replay = relay.since("b.1")
    assert replay is not None and [n.post_id for n in replay] == ["p2"]


def test_malformed_notices_are_skipped() -> None:
    relay = _relay()
    assert relay.dispatch(b"not json") is None
    assert relay.dispatch(b'{"id": "p1"}') is None
    assert relay.seq == 0 and not relay.buffer


def test_a_slow_listener_is_told_to_resync_instead_of_growing_without_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gateway.pages.live.MAX_PENDING", 2)
    relay = _relay(keep=10)
    listener = relay.listen_without_task()
    for post_id in ("p1", "p2", "p3"):
        _say(relay, post_id)
    assert listener.queue.qsize() == 2 and listener.lost


async def test_the_relay_reads_the_counts_of_watched_posts_only_and_in_one_query_per_change() -> None:
    reads: list[list[str]] = []

    async def read(post_ids: Sequence[str]) -> dict[str, Counts]:
        reads.append(list(post_ids))
        return {p: {"like_count": len(reads), "repost_count": 0, "quote_count": 0} for p in post_ids}

    relay = Relay(Settings(), counts=read)
    kinds = {"p1": "like", "p2": "repost", "p3": "bookmark", "p4": "like"}
    changes = {"changes": [[f"u{post_id}", post_id, kind] for post_id, kind in kinds.items()]}
    relay.changed(orjson.dumps(changes))
    assert relay.counting is None, "no open page shows a post's counts: nothing is read"
    pages = [relay.listen_without_task(watch) for watch in ("p1", "p2", "p3", "p2")]
    relay.changed(orjson.dumps(changes))
    relay.changed(b"not json")
    assert relay.counting is not None
    await relay.counting
    assert reads == [["p1", "p2"]], "a bookmark moves no count; p4 is not shown"
    sent = [pages[0].queue.get_nowait() for _ in range(pages[0].queue.qsize())]
    assert [(n.post_id, n.counts) for n in sent] == [
        ("p1", {"like_count": 1, "repost_count": 0, "quote_count": 0}),
        ("p2", {"like_count": 1, "repost_count": 0, "quote_count": 0}),
    ]
    for page in pages:
        relay.forget(page)
    assert not relay.watched


@pytest.mark.parametrize(
    ("cookie", "shown"),
    [
        ("saved:", "Profile saved."),
        ("followed:ada-1", "You follow @ada-1 now."),
        ("followed:<script>", ""),  # only a handle ever reaches the page
        ("followed:", ""),
        ("You were hacked:", ""),  # only the server's own sentences
        ("", ""),
    ],
)
def test_a_flash_cookie_shows_only_the_servers_own_messages(cookie: str, shown: str) -> None:
    headers = [(b"cookie", f"{FLASH_COOKIE}={cookie}".encode())] if cookie else []
    assert flash_text(Request({"type": "http", "headers": headers})) == shown
