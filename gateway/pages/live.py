"""Live updates: Server-Sent Events at `GET /events?feed=...`, relayed from Redis pub/sub `chirp:posts` (new posts,
`event: post`), `chirp:posts:deleted` (removed posts, `event: post-deleted`, sent to every stream) and
`chirp:notifications` (a user's unread count changed, `event: notifications` with `{"unread": n}`, sent only to
that user's streams: the bell in the nav updates over the stream the page already has) and `chirp:interactions`
(a batch of likes, reposts and quotes was applied: a post page's stream, `replies:<post id>`, gets `event: counts`
with `{"id", "like_count", "repost_count", "quote_count"}` of its post, first on connecting, then after each change).

One `Relay` per gateway process subscribes to the channel while streams are open (and `IDLE_S` after the last
one closes), numbers each notice `<boot>.<seq>`, keeps the last `KEEP` in memory and hands each to every open
stream. A stream sends the notices its page shows (`Feed`): `all` (every new post), `home` (the viewer's and
their followees' posts), `user:<id>` (one author's), `replies:<post id>`, `tag:<tag>`, or `bell` (nothing but the
viewer's unread count, starting with its current value: for pages without posts to update, so every page keeps
one connection per tab and a live bell); never a post by someone the viewer mutes, blocks or is blocked by (as of
connecting; a muted author's own profile page still gets theirs). Counts are read from the interactions read model
only for posts an open page of this process shows, by one task per process (one query for every post a change
touched, at most every `COUNTS_EVERY_S` while changes keep coming), so a read after the last change has the last
counts.

Nothing is lost across a reconnect: the browser's EventSource sends `Last-Event-ID` (heartbeats carry an `id:`
line so it advances past notices the page does not show), and the buffered notices after it are sent first.
When they cannot be (an id from another gateway process, older than the buffer, or a gap while Redis was away),
the stream sends `event: resync` and the page offers a reload. A page also passes the relay position it was
rendered at (`?since=`), so posts projected between rendering and connecting are sent too. Each stream ends
after `STREAM_S` (the browser reconnects within `RETRY_MS`, losing nothing), so a gateway shutting down never
waits long for open streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import secrets
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from chirp import redis_client
from chirp.logging import get_logger
from chirp.settings import Settings
from domain.text import tag_key
from gateway.auth.current import viewer
from gateway.errors import InvalidInput, Unauthorized
from gateway.relations import hidden_for_viewer, hidden_on_profile
from gateway.state import State, state_of
from store.interactions import CHANNEL as INTERACTIONS_CHANNEL
from store.interactions import Counts
from store.notifications import BELL_CHANNEL, unread_key
from store.posts import CHANNEL, DELETED_CHANNEL

log = get_logger("chirp.gateway")

KEEP = 500  # notices kept for reconnects
IDLE_S = 60.0  # the relay unsubscribes this long after its last stream closed
MAX_PENDING = 1000  # notices queued for one slow stream before it is told to resync
HEARTBEAT_S = 15.0
STREAM_S = 55.0  # plus up to 10 s of jitter, so reconnects do not come in waves
RETRY_MS = 1000
FOLLOWEES_STALE_S = 2.0
MAX_FOLLOWEES = 5000  # a home stream shows posts of at most this many followees (the newest follows)
FEED_KINDS = ("all", "home", "user", "replies", "tag", "bell")
COUNTS_EVERY_S = 0.2  # while a watched post's counts keep changing, they are read at most this often per process
COUNTED = frozenset({"like", "repost", "quote"})  # the kinds of change that move a post's counts
ReadCounts = Callable[[Sequence[str]], Awaitable[dict[str, Counts]]]


# Pure parts ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Notice:
    seq: int
    event_id: str
    post_id: str
    author_id: str
    reply_to: str | None
    hashtags: tuple[str, ...]
    deleted: bool = False  # a post that was removed (`post-deleted`): every page that shows it drops it
    recipient: str = ""  # a bell notice (`notifications`): whose unread count is now `unread`
    unread: int = 0
    counts: Counts | None = None  # a counts notice (`counts`): the post's like, repost and quote counts

    def sse(self) -> str:
        if self.counts is not None:
            return f"id: {self.event_id}\nevent: counts\ndata: {_counts_json(self.post_id, self.counts)}\n\n"
        if self.recipient:
            return (
                f"id: {self.event_id}\nevent: notifications\ndata: {orjson.dumps({'unread': self.unread}).decode()}\n\n"
            )
        if self.deleted:
            return f"id: {self.event_id}\nevent: post-deleted\ndata: {orjson.dumps({'id': self.post_id}).decode()}\n\n"
        data = orjson.dumps(
            {"id": self.post_id, "author_id": self.author_id, "reply_to": self.reply_to, "hashtags": self.hashtags}
        ).decode()
        return f"id: {self.event_id}\nevent: post\ndata: {data}\n\n"


def _counts_json(post_id: str, counts: Counts) -> str:
    return orjson.dumps({"id": post_id, **counts}).decode()


@dataclass(frozen=True, slots=True)
class Feed:
    kind: str
    arg: str = ""


def parse_feed(raw: str) -> Feed:
    """`all`, `home`, `user:<id>`, `replies:<post id>`, `tag:<tag>` or `bell`; InvalidInput(field="feed") otherwise."""
    kind, _, arg = raw.partition(":")
    if kind not in FEED_KINDS or (kind in ("all", "home", "bell")) != (arg == "") or len(arg) > 100:
        raise InvalidInput("feed is one of all, home, user:<id>, replies:<post id>, tag:<tag>, bell.", field="feed")
    return Feed(kind, tag_key(arg) if kind == "tag" else arg)


def shows(feed: Feed, notice: Notice, followees: frozenset[str] = frozenset(), viewer_id: str = "") -> bool:
    """Whether a page showing `feed` shows this new post (`followees` includes the viewer, for `home`); deletions
    go to every page, since any of them may show the post (a parent above its replies, a quote, an old page)."""
    if notice.recipient:
        return notice.recipient == viewer_id
    if notice.counts is not None:  # counts go to the page of that post
        return feed.kind == "replies" and feed.arg == notice.post_id
    if feed.kind == "bell":
        return False
    if feed.kind == "all" or notice.deleted:
        return True
    if feed.kind == "home":
        return notice.author_id in followees
    if feed.kind == "user":
        return notice.author_id == feed.arg
    if feed.kind == "replies":
        return notice.reply_to == feed.arg
    return feed.arg in notice.hashtags


# The relay ----------------------------------------------------------------------------------------------------


@dataclass(eq=False)
class Listener:
    queue: asyncio.Queue[Notice] = field(default_factory=asyncio.Queue)
    lost: bool = False  # notices were dropped for it: the page must resync
    watch: str = ""  # the post whose counts its page shows (a post page), if any

    def push(self, notice: Notice) -> None:
        if self.queue.qsize() >= MAX_PENDING:
            self.lost = True
        else:
            self.queue.put_nowait(notice)


class Relay:
    """Redis pub/sub to the open streams of this process, with a replay buffer (see the module docstring)."""

    def __init__(
        self, settings: Settings, *, keep: int = KEEP, idle_s: float = IDLE_S, counts: ReadCounts | None = None
    ) -> None:
        self.settings = settings
        self.idle_s = idle_s
        self.read_counts = counts  # None: no counts notices
        self.watched: Counter[str] = Counter()  # post -> open pages showing its counts
        self.stale: set[str] = set()  # watched posts whose counts changed since they were last read
        self.counting: asyncio.Task[None] | None = None
        self.boot = secrets.token_hex(4)
        self.seq = 0
        self.complete_after = 0  # every notice with a greater seq is in the buffer or was evicted in order
        self.buffer: deque[Notice] = deque(maxlen=keep)
        self.listeners: set[Listener] = set()
        self.ready = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    @property
    def position(self) -> str:
        """The id of the newest notice seen (`<boot>.<seq>`): a page rendered now has seen everything up to it."""
        return f"{self.boot}.{self.seq}"

    def listen_without_task(self, watch: str = "") -> Listener:
        """A listener fed by `dispatch` (what `listen` does, minus the subscription; for tests and tools); `watch`:
        the post whose counts its page shows."""
        listener = Listener(watch=watch)
        self.listeners.add(listener)
        if watch:
            self.watched[watch] += 1
        return listener

    def listen(self, watch: str = "") -> Listener:
        """A listener for one stream; subscribes to Redis if no subscription is running."""
        listener = self.listen_without_task(watch)
        if self.task is None or self.task.done():
            self.ready = asyncio.Event()
            self.task = asyncio.create_task(self._run(), name="chirp-live-relay")
        return listener

    def forget(self, listener: Listener) -> None:
        if listener in self.listeners and listener.watch:
            self.watched[listener.watch] -= 1
            if self.watched[listener.watch] <= 0:
                del self.watched[listener.watch]
        self.listeners.discard(listener)

    def since(self, event_id: str) -> list[Notice] | None:
        """The buffered notices after `event_id`; None when some may be missing (unknown id, evicted, or a gap)."""
        boot, _, raw_seq = event_id.partition(".")
        if boot != self.boot or not raw_seq.isdigit():
            return None
        seq = int(raw_seq)
        oldest = self.buffer[0].seq if self.buffer else self.seq + 1
        if seq > self.seq or seq < self.complete_after or seq < oldest - 1:
            return None
        return [n for n in self.buffer if n.seq > seq]

    def dispatch(self, raw: str | bytes, deleted: bool = False, bell: bool = False) -> Notice | None:
        """Number a notice from the channel (`deleted`: from the deletions channel, `bell`: from the notifications
        channel), buffer it, hand it out."""
        try:
            data: dict[str, Any] = orjson.loads(raw)
            seq = self.seq + 1
            if bell:  # a bell notice: whose unread count changed, and to what
                data = {"id": "", "author_id": "", "recipient": str(data["user_id"]), "unread": int(data["unread"])}
            notice = Notice(
                seq=seq,
                event_id=f"{self.boot}.{seq}",
                post_id=str(data["id"]),
                author_id="" if deleted else str(data["author_id"]),
                reply_to=data.get("reply_to"),
                hashtags=tuple(data.get("hashtags") or ()),
                deleted=deleted,
                recipient=data.get("recipient", ""),
                unread=data.get("unread", 0),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("ignored a malformed live notice", notice=str(raw)[:200])
            return None
        self.seq = seq
        self.buffer.append(notice)
        for listener in self.listeners:
            listener.push(notice)
        return notice

    def changed(self, raw: str | bytes) -> None:
        """An interactions notice (`{"changes": [[user, post, kind], ...]}`): the watched posts whose counts moved
        are read again (by one task, so reads of one post are in order and the last one is the newest)."""
        if not self.watched or self.read_counts is None:
            return
        try:
            moved = {str(post) for _, post, kind in orjson.loads(raw)["changes"] if kind in COUNTED}
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("ignored a malformed interactions notice", notice=str(raw)[:200])
            return
        self.stale |= moved & self.watched.keys()
        if self.stale and (self.counting is None or self.counting.done()):
            self.counting = asyncio.create_task(self._send_counts(self.read_counts), name="chirp-live-counts")

    async def _send_counts(self, read_counts: ReadCounts) -> None:
        while self.stale:
            started = time.monotonic()
            post_ids, self.stale = sorted(self.stale), set()
            try:
                found = await read_counts(post_ids)
            except Exception as exc:  # a store outage: these counts wait for the next change or reload
                log.warning("live counts could not be read", error=repr(exc))
                return
            for post_id, counts in found.items():
                self.counted(post_id, counts)
            await asyncio.sleep(max(0.0, started + COUNTS_EVERY_S - time.monotonic()))

    def counted(self, post_id: str, counts: Counts) -> Notice:
        """Number a post's new counts, buffer them, hand them out."""
        self.seq += 1
        notice = Notice(self.seq, f"{self.boot}.{self.seq}", post_id, "", None, (), counts=counts)
        self.buffer.append(notice)
        for listener in self.listeners:
            listener.push(notice)
        return notice

    async def _run(self) -> None:
        # On a cluster the subscription is on one node: PUBLISH reaches every node.
        client = redis_client.connect(self.settings, decode_responses=True)
        try:
            while not await self._subscribed(client):
                # Redis went away: notices may have been missed, so open pages resync once it is back.
                for listener in self.listeners:
                    listener.lost = True
                await asyncio.sleep(1.0)
        finally:
            await client.aclose()

    async def _subscribed(self, client: aioredis.Redis) -> bool:
        """Relay until idle (True) or until Redis fails (False)."""
        idle_since: float | None = None
        try:
            async with client.pubsub() as pubsub:
                await pubsub.subscribe(CHANNEL, DELETED_CHANNEL, BELL_CHANNEL, INTERACTIONS_CHANNEL)
                self.complete_after = self.seq
                self.ready.set()
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message["type"] == "message":
                        channel = message["channel"]
                        if channel == INTERACTIONS_CHANNEL:
                            self.changed(message["data"])
                        else:
                            self.dispatch(message["data"], channel == DELETED_CHANNEL, channel == BELL_CHANNEL)
                    if self.listeners:
                        idle_since = None
                    elif idle_since is None:
                        idle_since = time.monotonic()
                    elif time.monotonic() - idle_since > self.idle_s:
                        self.task = None  # the next listener starts a fresh subscription
                        return True
        except (RedisError, OSError) as exc:
            log.warning("live relay lost Redis; retrying", error=str(exc))
            self.ready.clear()
            return False


# The stream ---------------------------------------------------------------------------------------------------


class _Followees:
    """Whom a viewer follows (and the viewer), reloaded when a post by someone else arrives and the set is stale."""

    def __init__(self, state: State, user_id: str) -> None:
        self.users = state.users
        self.user_id = user_id
        self.ids: frozenset[str] = frozenset({user_id})
        self.loaded = 0.0

    async def load(self) -> None:
        page = await self.users.following(self.user_id, None, MAX_FOLLOWEES)
        self.ids = frozenset({self.user_id, *(row["user_id"] for row in page.rows)})
        self.loaded = time.monotonic()

    async def refresh_for(self, author_id: str) -> None:
        """Reload when a post by someone not (yet) followed arrives: the viewer may have just followed them."""
        if author_id not in self.ids and time.monotonic() - self.loaded > FOLLOWEES_STALE_S:
            await self.load()


def _resync() -> str:
    return "event: resync\ndata: {}\n\n"


async def _unread(redis: aioredis.Redis, user_id: str) -> int:
    return int(await redis.zcard(unread_key(user_id)))


def _bell(unread: int) -> str:
    return f"event: notifications\ndata: {orjson.dumps({'unread': unread}).decode()}\n\n"


async def _counts_now(relay: Relay, post_id: str) -> str:
    """The post's counts as of connecting (a change applied between the page's rendering and now has no notice
    for this page); nothing when they cannot be read."""
    if relay.read_counts is None:
        return ""
    try:
        found = await relay.read_counts([post_id])
    except Exception as exc:
        log.warning("live counts could not be read", error=repr(exc))
        return ""
    counts = found.get(post_id, {"like_count": 0, "repost_count": 0, "quote_count": 0})
    return f"event: counts\ndata: {_counts_json(post_id, counts)}\n\n"


async def _stream(
    relay: Relay,
    listener: Listener,
    feed: Feed,
    followees: _Followees | None,
    viewer_id: str,
    hidden: frozenset[str],
    start: str,
    last: str | None,
    since: str | None,
    unread: Callable[[], Awaitable[int]] | None = None,
) -> AsyncIterator[str]:
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(relay.ready.wait(), timeout=5.0)
        yield f"retry: {RETRY_MS}\n\n"  # first bytes once subscribed: nothing published after them is missed
        if unread is not None:  # read once subscribed, so a change after it comes as a notice
            yield _bell(await unread())
        if listener.watch and (counts := await _counts_now(relay, listener.watch)):  # likewise
            yield counts
        backlog = relay.since(last) if last else None
        if last and backlog is None:
            yield _resync()  # a reconnect that cannot be replayed
        if backlog is None and since:
            backlog = relay.since(since)  # a page's own position; when too old, it simply starts now
        pending = backlog if backlog is not None else relay.since(start) or []
        done = relay.seq
        end = time.monotonic() + STREAM_S + random.uniform(0, 10)
        while time.monotonic() < end:
            for notice in pending:
                if followees is not None and notice.author_id and not notice.deleted:
                    await followees.refresh_for(notice.author_id)
                if notice.author_id in hidden and not notice.deleted:
                    continue
                if shows(feed, notice, followees.ids if followees else frozenset(), viewer_id):
                    yield notice.sse()
            if listener.lost:
                listener.lost = False
                yield _resync()
            try:
                notice = await asyncio.wait_for(listener.queue.get(), timeout=HEARTBEAT_S)
            except TimeoutError:
                pending = []
                yield f": ping\nid: {relay.boot}.{done}\n\n"
                continue
            pending = [notice] if notice.seq > done else []  # older ones came with the backlog
            done = max(done, notice.seq)
        yield f"id: {relay.boot}.{done}\n\n"
    finally:
        relay.forget(listener)


async def events(request: Request) -> Response:
    """`GET /events?feed=...&since=...`: new posts for one page, as Server-Sent Events (see the module docstring)."""
    feed = parse_feed(request.query_params.get("feed", "all"))
    state = state_of(request)
    me = await viewer(request)
    followees = None
    if feed.kind in ("home", "bell") and me is None:
        raise Unauthorized("Log in to follow your home timeline." if feed.kind == "home" else "Log in for a bell.")
    if feed.kind == "home" and me is not None:
        followees = _Followees(state, me.user_id)
        await followees.load()
    unread: Callable[[], Awaitable[int]] | None = None
    if feed.kind == "bell" and me is not None:
        unread = functools.partial(_unread, state.redis, me.user_id)
    relay = state.live_relay
    listener = relay.listen(watch=feed.arg if feed.kind == "replies" else "")
    start, last = relay.position, request.headers.get("last-event-id")
    since = request.query_params.get("since")
    # Authors the viewer mutes, blocks or is blocked by, as of connecting (a stream lasts about a minute).
    hidden: frozenset[str] = frozenset()
    if feed.kind != "bell":
        hidden = frozenset(
            await (hidden_on_profile(request, feed.arg) if feed.kind == "user" else hidden_for_viewer(request))
        )
    stream = _stream(relay, listener, feed, followees, me.user_id if me else "", hidden, start, last, since, unread)
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream, media_type="text/event-stream", headers=headers)


routes = [Route("/events", events, methods=["GET"])]
