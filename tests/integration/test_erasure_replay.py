"""Replaying every read model gives the live models back, before an erasure and after it, apart from what was erased.

A little world: ann, bob, cat and sam (suspended for spam) stay, lea leaves. They follow each other, post with
mentions and tags, reply, quote, edit, like, repost, bookmark, mute, block, report, and read their notifications.
Every read model is snapshotted (tests/integration/read_models.py: every table and Redis prefix a consumer owns, as
the replay's registry lists them, and the home timelines as their users read them) and:

1. `chirp rebuild --all` (every model, as `chirp replay` runs each) rebuilds exactly the live models;
2. lea deletes her account and ann one post; once the erasure delay has passed and the consumers have settled, the
   live models and a rebuild agree on every line that names neither lea nor an erased post (the live models keep
   tombstones of what was undone, by those ids; a rebuild skips the erased events altogether); and
3. the rebuild is the first snapshot without the erased content (lea, her handle, her posts, the deleted post, and
   what only they made: `derived`), with the counts they moved recomputed (`recounted`) — nothing else changed; what
   it still holds that names them is other people's references, there before (`REMAINING`).
Nothing is compared loosely but what `read_models.UNCOMPARED_*` names (no column: every time in the tables is an
event's time, `parsed_at` included), the counts above, and the order of the home timelines (compared as sets).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from chirp.settings import Settings
from consumers.runtime import all_consumers
from ops.lag import measure
from schemas.events import new_id
from tests.conftest import eventually, replays_redis
from tests.integration.erasure_support import rebuild_all
from tests.integration.helpers import login, unique_handle
from tests.integration.read_models import Snapshot, Token, differences, mentions, only, snapshot, without

pytestmark = [pytest.mark.usefixtures("pipeline"), replays_redis]

# Counts that an erased actor moved: checked against the rows they count, not against the first snapshot.
COUNTS = {
    "table users": ("followers_count", "following_count"),
    "table post_counters": ("like_count", "repost_count", "quote_count"),
}
# Redis keys scored by other lines: a notification item by its newest actor's time, a suggestion by its count.
SCORED_BY_OTHERS = ("notify:items:", "notify:unread:", "suggest:rank:")
# Where a rebuild after the erasure still names an erased person or post (docs/erasure.md, "What remains"): other
# people's references to them.
REMAINING = {
    "lea": {"table reports"},  # cat's report about her post stays, for the operators
    "@lea": {"table posts", "table post_versions", "table search_posts", "redis trending:"},  # bob's post names her
    "l1": {"table posts", "table search_posts", "table quotes", "table post_counters", "table reports"},  # b1, c1
    "l2": set(),
    "l3": set(),
    "a2": {"table posts", "table search_posts"},  # cat's reply keeps its parent's id
}


class World:
    """The people of the test (by handle), their ids, their posts by name, and the tags they use."""

    def __init__(self, client: httpx.AsyncClient, pg: asyncpg.Pool) -> None:
        self.client, self.pg = client, pg
        self.handles: dict[str, str] = {}
        self.ids: dict[str, str] = {}
        self.auth: dict[str, dict[str, str]] = {}
        self.posts: dict[str, str] = {}
        self.tags = [f"t{new_id()[-10:].lower()}", f"t{new_id()[-10:].lower()}"]

    async def join(self, name: str) -> None:
        handle = unique_handle(name)
        self.handles[name], self.auth[name] = handle, await login(self.client, handle)
        self.ids[name] = (await self.client.get("/api/me", headers=self.auth[name])).json()["user_id"]
        await eventually(lambda: self.client.get(f"/api/users/{handle}"), until=lambda r: r.status_code == 200)

    async def ok(self, method: str, path: str, who: str, body: dict[str, Any] | None = None) -> httpx.Response:
        response = await self.client.request(method, path, json=body, headers=self.auth[who])
        assert response.status_code in (200, 202, 204), f"{method} {path}: {response.text}"
        return response

    async def post(self, name: str, who: str, body: str, **refs: str) -> None:
        fields = {k: self.posts[v] for k, v in refs.items()}
        self.posts[name] = (await self.ok("POST", "/api/posts", who, {"body": body, **fields})).json()["id"]
        sql = "SELECT 1 FROM posts WHERE post_id = $1 AND deleted_at IS NULL"
        await eventually(lambda: self.pg.fetchval(sql, self.posts[name]))

    async def act(self, who: str, kind: str, post: str) -> None:
        await self.ok("POST", f"/api/posts/{self.posts[post]}/{kind}", who)

    async def relate(self, who: str, kind: str, whom: str) -> None:
        await self.ok("POST", f"/api/users/{self.handles[whom]}/{kind}", who)

    def token(self, name: str) -> str:
        """The id of a person (`lea`) or post (`l1`), or a person's handle (`@lea`)."""
        return self.handles[name[1:]] if name.startswith("@") else self.ids.get(name) or self.posts[name]

    def tokens(self) -> list[str]:
        """What a line of a read model must mention to be this world's."""
        return [*self.ids.values(), *self.handles.values(), *self.posts.values(), *self.tags]

    async def timelines(self, names: list[str]) -> Snapshot:
        """The home timelines as their users read them (once built in Redis: the first read after a replay is
        served from SQL while the timeline is rebuilt), as lines of post id and reposter."""

        async def read(who: str) -> dict[str, Any]:
            response = await self.client.get("/api/timeline", headers=self.auth[who])
            assert response.status_code == 200, response.text
            return dict(response.json())

        found = {}
        for who in names:
            page = await eventually(lambda who=who: read(who), until=lambda p: not p["partial"])
            posts = [json.dumps([i["id"]]) for i in page["items"]]
            reposts = [
                json.dumps([i["id"], "reposted by", i["reposted_by"]]) for i in page["items"] if i.get("reposted_by")
            ]
            found[f"home timeline of {who}"] = sorted(posts + reposts)
        return found


async def build(world: World) -> None:
    """The world before anyone leaves."""
    for name in ("ann", "bob", "cat", "sam", "lea"):
        await world.join(name)
    await world.ok("PATCH", "/api/me", "lea", {"display_name": "Lea Leaving", "bio": "here for now"})
    await world.ok("PATCH", "/api/me", "ann", {"bio": "staying"})
    for who, whom in [("ann", "bob"), ("bob", "ann"), ("ann", "lea"), ("lea", "ann"), ("bob", "lea"), ("lea", "bob")]:
        await world.relate(who, "follow", whom)
    for who, whom in [("cat", "ann"), ("cat", "bob")]:
        await world.relate(who, "follow", whom)
    t1, t2 = world.tags
    h = world.handles
    await world.post("a1", "ann", f"hello @{h['bob']} #{t1}")
    await world.post("a2", "ann", f"soon regretted #{t2} @{h['lea']}")
    await world.post("l1", "lea", f"@{h['ann']} look #{t1} #{t2}")
    await world.ok("PATCH", f"/api/posts/{world.posts['l1']}", "lea", {"body": f"@{h['ann']} look again #{t1}"})
    await world.post("b1", "bob", f"@{h['lea']} agreed #{t1}", reply_to="l1")
    await world.post("l2", "lea", "nice", reply_to="a1")
    await world.post("c1", "cat", f"quoting #{t1}", quote_of="l1")
    await world.post("l3", "lea", f"quoting ann #{t2}", quote_of="a1")
    await world.post("c2", "cat", "a reply to a post that goes", reply_to="a2")
    for who, kind, post in [
        ("bob", "like", "a1"),
        ("lea", "like", "a1"),
        ("ann", "like", "l1"),
        ("bob", "like", "a2"),
        ("lea", "like", "b1"),
        ("lea", "repost", "b1"),
        ("ann", "repost", "l1"),
        ("lea", "bookmark", "a1"),
        ("bob", "bookmark", "l1"),
        ("ann", "bookmark", "a2"),
    ]:
        await world.act(who, kind, post)
    unread = "/api/notifications/unread"
    await eventually(lambda: world.ok("GET", unread, "ann"), until=lambda r: r.json()["count"] >= 5)
    await world.ok("POST", "/api/notifications/read", "ann", {})
    for who, kind, post in [("cat", "like", "a1"), ("cat", "repost", "a1")]:  # after ann's read mark: new items
        await world.act(who, kind, post)
    for who, kind, whom in [("lea", "mute", "cat"), ("ann", "mute", "cat"), ("cat", "mute", "lea")]:
        await world.relate(who, kind, whom)
    await world.relate("lea", "block", "cat")
    await world.relate("cat", "block", "lea")
    await world.ok("POST", "/api/reports", "cat", {"post_id": world.posts["l1"], "reason": "spam", "comment": "cat"})
    dismissed = await world.ok("POST", "/api/reports", "lea", {"handle": h["cat"], "reason": "spam", "comment": "lea"})
    upheld = await world.ok("POST", "/api/reports", "cat", {"handle": h["sam"], "reason": "spam"})
    for report, action in [(dismissed, "dismiss"), (upheld, "suspend")]:
        await resolve(world.pg, report.json()["id"], action)


async def resolve(pg: asyncpg.Pool, report_id: str, action: str) -> None:
    """`chirp reports resolve`, once the report is in the moderation model."""
    await eventually(lambda: pg.fetchval("SELECT 1 FROM reports WHERE report_id = $1", report_id))
    cmd = [sys.executable, "-m", "ops", "reports", "resolve", report_id, "--action", action]
    proc = await asyncio.create_subprocess_exec(*cmd, env={**os.environ})
    assert await asyncio.wait_for(proc.wait(), 60) == 0


async def settled(settings: Settings, groups: list[str]) -> None:
    """Wait until every consumer group has handled everything in the log (twice in a row: what one handles may
    publish events for the others)."""

    async def lag() -> int:
        return sum(row.lag for row in await measure(settings, groups))

    for _ in range(2):
        await eventually(lag, until=lambda n: n == 0, timeout=60)


async def models(world: World, pg: asyncpg.Pool, redis: aioredis.Redis, readers: list[str]) -> Snapshot:
    return await snapshot(pg, redis, world.tokens()) | await world.timelines(readers)


def assert_same(expected: Snapshot, actual: Snapshot, what: str) -> None:
    """One assert per model, naming it, with the lines missing from `actual` and the lines it has in excess."""
    found = differences(expected, actual)
    for model in sorted(expected.keys() | actual.keys()):
        detail = json.dumps(found.get(model), indent=1)
        assert model not in found, f"{what}: {model} differs (all that differ: {sorted(found)}):\n{detail}"


def derived(found: Snapshot, erased: list[str]) -> list[Token]:
    """What erased content made, so that it goes with it, though its lines do not all name it: notification items
    whose every actor is erased (as (user id, item id): an item id names a post or an event, not the actors) or that
    answer an erased post, trending subjects (a tag, a mentioned handle) that only erased posts contributed to, and
    the reports that named erased content (filed by the leaver: the decision on it stays, without them)."""
    actors: dict[tuple[str, str], list[str]] = {}
    contributions: dict[str, list[str]] = {}
    answering: list[Token] = []  # replies and quotes of erased posts, listed under them
    for line in found["redis notify:"]:
        key, member, *_ = json.loads(line)
        if key.startswith("notify:actors:{"):
            user, item = key.removeprefix("notify:actors:{").split("}:", 1)
            actors.setdefault((user, item), []).append(line)
        elif key.startswith("notify:post:{") and mentions(line, erased):
            answering.append(tuple(member.split(" ")))
    for line in found["redis trending:"]:
        key, *_ = json.loads(line)
        if ":p:" in key:
            contributions.setdefault(key.split(":p:", 1)[1], []).append(line)
    items = [item for item, lines in actors.items() if all(mentions(line, erased) for line in lines)]
    subjects = [subject for subject, lines in contributions.items() if all(mentions(line, erased) for line in lines)]
    reports = [json.loads(line)["report_id"] for line in found["table reports"] if mentions(line, erased)]
    return [*items, *answering, *subjects, *reports]


def _uncounted_line(model: str, line: str) -> str | None:
    value = json.loads(line)
    if model in COUNTS:
        rest = {k: v for k, v in value.items() if k not in COUNTS[model]}
        return None if rest.keys() == {"post_id", "deleted_at"} and not rest["deleted_at"] else json.dumps(rest)
    if isinstance(value, list) and str(value[0]).startswith(SCORED_BY_OTHERS):
        return json.dumps(value[:2])
    return line


def uncounted(found: Snapshot) -> Snapshot:
    """The snapshot without what counts or dates other lines (`COUNTS`, `SCORED_BY_OTHERS`); a counters row that
    says nothing else (a post not deleted) goes: `recounted` checks it is there when there is something to count."""
    lines = {model: [_uncounted_line(model, line) for line in found[model]] for model in found}
    return {model: sorted(line for line in lines[model] if line is not None) for model in lines}


def recounted(found: Snapshot) -> None:
    """Every count equals the lines it counts: followers and followees (active follows), likes and reposts (active
    ones), quotes; a notification item's time is its newest actor's; a suggestion's rank is how many followees
    lead to it."""
    follows = [json.loads(line) for line in found["table follows"]]
    for user in map(json.loads, found["table users"]):
        followers = sum(f["active"] and f["followee_id"] == user["user_id"] for f in follows)
        following = sum(f["active"] and f["follower_id"] == user["user_id"] for f in follows)
        assert (user["followers_count"], user["following_count"]) == (followers, following), user
    interactions = [json.loads(line) for line in found["table interactions"]]
    quotes = [json.loads(line) for line in found["table quotes"]]
    counters = {c["post_id"]: c for c in map(json.loads, found["table post_counters"])}
    counted = {i["post_id"] for i in interactions if i["active"] and i["kind"] != "bookmark"}
    for post in counters.keys() | counted | {q["quote_of"] for q in quotes if q["active"]}:
        likes = sum(i["active"] and i["kind"] == "like" and i["post_id"] == post for i in interactions)
        reposts = sum(i["active"] and i["kind"] == "repost" and i["post_id"] == post for i in interactions)
        quoted = sum(q["active"] and q["quote_of"] == post for q in quotes)
        counter = counters.get(post, {"like_count": 0, "repost_count": 0, "quote_count": 0})
        assert (counter["like_count"], counter["repost_count"], counter["quote_count"]) == (likes, reposts, quoted)
    notes = [json.loads(line) for line in found["redis notify:"]]
    for key, item, at in [n for n in notes if n[0].startswith("notify:items:")]:
        actors = f"notify:actors:{key.removeprefix('notify:items:')}:{item}"
        assert at == max(n[2] for n in notes if n[0] == actors), (key, item)
    suggestions = [json.loads(line) for line in found["redis suggest:"]]
    for key, candidate, rank in [s for s in suggestions if s[0].startswith("suggest:rank:")]:
        via = f"suggest:via:{key.removeprefix('suggest:rank:')}:{candidate}"
        assert rank == sum(s[0] == via for s in suggestions), (key, candidate)


async def test_replaying_every_model_gives_the_live_models_before_and_after_an_erasure(
    fast_erasure: str,
    client: httpx.AsyncClient,
    pg: asyncpg.Pool,
    redis_client: aioredis.Redis,
    settings: Settings,
) -> None:
    groups = [settings.group(c.name) for c in all_consumers()] + [fast_erasure]
    world = World(client, pg)
    await build(world)
    stayers = ["ann", "bob", "cat"]  # whose home timelines are read (sam is suspended: his sessions are refused)
    await settled(settings, groups)
    live = await models(world, pg, redis_client, stayers)
    assert all(live.values()), f"every model holds some of the world: {[m for m, v in live.items() if not v]}"

    await rebuild_all()
    assert_same(live, await models(world, pg, redis_client, stayers), "a rebuild before the erasure")

    await world.ok("DELETE", "/api/me", "lea", {"confirm": world.handles["lea"]})
    await world.ok("DELETE", f"/api/posts/{world.posts['a2']}", "ann")
    done = "SELECT bool_and(done_at IS NOT NULL) AND count(*) = 2 FROM erasures WHERE target = ANY($1::text[])"
    targets = [f"u:{world.ids['lea']}", f"p:{world.posts['a2']}"]
    await eventually(lambda: pg.fetchval(done, targets), timeout=60)
    await settled(settings, groups)
    live_after = await models(world, pg, redis_client, stayers)
    await rebuild_all()
    rebuilt = await models(world, pg, redis_client, stayers)

    erased_posts = [world.posts[p] for p in ("l1", "l2", "l3", "a2")]
    erased = [world.ids["lea"], world.handles["lea"], *erased_posts]
    gone = [*erased, *derived(live, erased)]
    # The live models keep tombstones of what was undone (so that a late event changes nothing); a rebuild after
    # the erasure skips those events altogether. Apart from the erased content, the two agree.
    assert_same(without(live_after, erased), without(rebuilt, erased), "the live models and a rebuild after erasure")
    # The rebuild is the models before, without the erased content and with the counts it moved recomputed ...
    assert_same(uncounted(without(live, gone)), uncounted(without(rebuilt, gone)), "before and after the erasure")
    recounted(rebuilt)
    # ... and what it still holds that names the erased content was there before: other people's references to it.
    for model, lines in only(uncounted(rebuilt), erased).items():
        assert set(lines) <= set(uncounted(live)[model]), f"{model}: the rebuild adds {set(lines) - set(live[model])}"
    for name, models_left in REMAINING.items():
        left = only(rebuilt, [world.token(name)])
        assert set(left) <= models_left, f"{name} is left in {sorted(set(left) - models_left)}"
