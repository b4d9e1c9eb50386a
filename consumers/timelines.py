"""Home timelines, fanned out on write into Redis (store/timelines.py).

In: post-parsed (the post is renderable by then), post-deleted, user-followed, user-unfollowed, post-reposts.
Out: Redis keys under `chirp:tl:` (store/timelines.py): a sorted set of post ids and reposts per user, the big
accounts each user merges at read time, and the follow and repost events applied.
Idempotency: adding a member twice is one member, removing it twice is no member; follow/unfollow effects are
applied only when newer than the last one applied to that pair (a per-follower hash), backfill and trim are both
repeatable. Authors with more than `fanout_max_followers` followers are not fanned out: their followers' timelines
name them in `:big` and the read path merges their posts from PostgreSQL. Reposts follow the same rule by the
reposter's followers: a small account's repost is a member of its followers' timelines (and its own), a big
account's is merged at read time from the interactions table. A repost or unrepost is applied only when newer than
the last one applied to its (user, post) in the last minutes and than what the interactions table shows; a new
repost of a post replaces the reposter's older one.
Only timelines that exist are written: a missing one is rebuilt from the posts and follows tables when its user
reads it (so a replay behind rebuilt tables writes no timeline at all). What a rebuild could miss because those
tables lag is kept for it: posts in their author's `fresh` set, follows by a backfill that creates the timeline.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from chirp.logging import get_logger
from consumers.runtime import Consumer, Context
from schemas import topics
from schemas.events import PostDeleted, PostParsed, PostRepost, UserFollowed, UserUnfollowed
from store.timelines import (
    PostgresTimelineSource,
    RedisTimelines,
    RepostChange,
    member,
    newest_reposts,
    repost_member,
    via_of,
)
from store.users import FollowChange, newest_per_pair

consumer = Consumer(
    "timelines",
    "Home timelines: fan-out on write into Redis, big accounts merged at read time.",
    redis_prefixes=("chirp:tl:",),
    after=("users", "posts", "interactions"),  # it reads their tables
)
log = get_logger("chirp.timelines")
BACKFILL_CHUNK = 200  # follows backfilled together: up to `timeline_length` posts each are in memory at once


@dataclass
class Fanout:
    """Where a batch of posts goes: members per timeline, and which authors are too big to fan out."""

    timelines: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    big: set[str] = field(default_factory=set)
    small: set[str] = field(default_factory=set)


def plan_fanout(
    posts: Iterable[tuple[str, str]],
    followers: dict[str, list[str]],
    big: set[str],
    max_followers: int,
    reach: set[str] | None = None,
) -> Fanout:
    """Each (member, author) goes to its author's timeline, and to every follower's unless the author has too many
    followers; with `reach`, only to the timelines it names. (For a repost the "author" is the reposter.)"""
    plan = Fanout()
    targets: dict[str, list[str]] = {}  # per author, the followers' timelines its posts go to (authors post often)
    for value, author in posts:
        if reach is None or author in reach:
            plan.timelines[author].append(value)
        if author in big or len(followers.get(author, ())) > max_followers:
            plan.big.add(author)
            continue
        plan.small.add(author)
        if author not in targets:
            mine = followers.get(author, [])
            targets[author] = mine if reach is None else [f for f in mine if f in reach]
        for follower in targets[author]:
            plan.timelines[follower].append(value)
    return plan


def with_recent(followers: dict[str, list[str]], recent: dict[str, dict[str, bool]]) -> dict[str, list[str]]:
    """The projected followers of each author, corrected by the follow events of the last minutes."""
    corrected = {}
    for author, projected in followers.items():
        changes = recent.get(author)
        if not changes:  # most authors: no follow event in the last minutes
            corrected[author] = projected
            continue
        known = set(projected)
        kept = [f for f in projected if changes.get(f, True)]
        corrected[author] = kept + [f for f, following in changes.items() if following and f not in known]
    return corrected


def _change(event: UserFollowed | UserUnfollowed, *, active: bool) -> FollowChange:
    return FollowChange(event.payload.follower_id, event.payload.followee_id, active, event.occurred_at)


def _stores(ctx: Context) -> tuple[RedisTimelines, PostgresTimelineSource]:
    return ctx.timelines, ctx.timeline_source


@consumer.on_setup
async def adopt_timelines(ctx: Context, me: Consumer) -> None:
    """Timelines made before the `homes` marker was kept still get fan-out (a shadow copy finds none of them)."""
    if await _stores(ctx)[0].adopt_unmarked():
        log.info("timelines found without their marker: marked")


@consumer.on(topics.POST_PARSED, batch=True)
async def on_post_parsed(events: list[PostParsed], ctx: Context) -> None:
    timelines, source = _stores(ctx)
    posts = {e.payload.post_id: e.payload.author_id for e in events}
    stored = await source.stored(list(posts))  # a replayed post-parsed must not bring a deleted post back
    live = [(post_id, author) for post_id, author in posts.items() if not stored.get(post_id, False)]
    # A missing timeline is rebuilt from the posts table when read: posts that table lacks yet are kept aside for
    # that (before the fan-out, so a rebuild starting meanwhile gets them one way or the other).
    unseen: dict[str, list[str]] = defaultdict(list)
    for post_id, author in live:
        if post_id not in stored:
            unseen[author].append(member(post_id, author))
    await timelines.remember_fresh(unseen)
    await _fan_out([(member(post_id, author), author) for post_id, author in live], ctx)


async def _fan_out(values: list[tuple[str, str]], ctx: Context) -> None:
    """Write each (member, author or reposter) into the timelines it goes to: small accounts' into their followers'
    existing timelines, and mark the big accounts (merged at read time by their followers)."""
    if not values:
        return
    timelines, source = _stores(ctx)
    limit = ctx.settings.fanout_max_followers
    authors = {a for _, a in values}
    recent = await timelines.recent_followers(authors)
    if await timelines.any_exist():
        projected, big = await source.fanout_targets(authors, limit)
        followers = with_recent(projected, recent)
        have = await timelines.existing(authors.union(*followers.values()))
    else:
        # No timeline to write to (a replay's shadow copy, a new system): only which authors are big matters. Their
        # follower lists are read only where recent follow events change the count.
        changed = {a for a in authors if recent[a]}
        projected, big = await source.fanout_targets(changed, limit)
        followers = with_recent(projected, recent)
        big |= await source.big_authors(authors - changed, limit)
        have = set()
    plan = plan_fanout(values, followers, big, limit, reach=have)
    for author in plan.big:
        if await timelines.mark_big(author):
            await _became_big(author, timelines, source)
    await timelines.unmark_big(plan.small)
    await timelines.add(plan.timelines, create=False)


async def _became_big(author: str, timelines: RedisTimelines, source: PostgresTimelineSource) -> None:
    """From now on the author's posts and reposts are merged at read time: tell every follower's timeline so."""
    followers = (await source.followers([author]))[author]
    log.info("author no longer fanned out", author_id=author, followers=len(followers))
    await timelines.add_big({follower: [author] for follower in followers})


@consumer.on(topics.POST_DELETED, batch=True)
async def on_post_deleted(events: list[PostDeleted], ctx: Context) -> None:
    timelines, source = _stores(ctx)
    authors = {e.payload.author_id for e in events}
    followers = await source.followers(authors)
    recent = await timelines.recent_followers(authors)  # removing from a timeline that never had it is harmless
    owners = {a: {a, *followers[a], *recent[a]} for a in authors}
    await timelines.remove(
        (member(e.payload.post_id, e.payload.author_id), owners[e.payload.author_id]) for e in events
    )


def _repost(event: PostRepost) -> RepostChange:
    data = event.payload
    return RepostChange(data.user_id, data.post_id, event.type == "post-reposted", event.occurred_at)


@consumer.on(topics.POST_REPOSTS, batch=True)
async def on_reposts(events: list[PostRepost], ctx: Context) -> None:
    timelines, source = _stores(ctx)
    changes = newest_reposts(_repost(e) for e in events)
    table = await source.repost_states(changes)  # a replay behind the interactions table applies only its state
    newer = await timelines.newer_reposts(changes)
    fresh = [
        (c, known == c.state) for c, known, new in zip(changes, table, newer, strict=True) if new and known <= c.state
    ]
    await timelines.record_reposts([c for c, _ in fresh], [known for _, known in fresh])
    await _unrepost([c for c, _ in fresh if not c.active], timelines, source)
    reposts = [(c, known) for c, known in fresh if c.active]
    authors = await source.posts.authors_of([c.post_id for c, _ in reposts]) if reposts else {}
    values: list[tuple[str, str]] = []
    unseen: dict[str, list[str]] = defaultdict(list)  # reposts the interactions table lacks yet, kept for rebuilds
    for c, known in reposts:
        if (author := authors.get(c.post_id)) is None:
            log.info("repost of a post not live: not in timelines", post_id=c.post_id, user_id=c.user_id)
            continue
        values.append((repost_member(c.post_id, author, c.user_id, c.at), c.user_id))
        if not known:
            unseen[c.user_id].append(values[-1][0])
    await timelines.remember_fresh(unseen)
    await _fan_out(values, ctx)


async def _unrepost(changes: list[RepostChange], timelines: RedisTimelines, source: PostgresTimelineSource) -> None:
    """The reposts leave the reposter's timeline and its followers' (those the follow events of the last minutes
    name too)."""
    reposters = {c.user_id for c in changes}
    followers = await source.followers(reposters)
    recent = await timelines.recent_followers(reposters)
    owners = {r: {r, *followers[r], *recent[r]} for r in reposters}
    await timelines.unrepost((c.user_id, c.post_id, owners[c.user_id]) for c in changes)


@consumer.on(topics.USER_FOLLOWED, batch=True)
async def on_user_followed(events: list[UserFollowed], ctx: Context) -> None:
    await _apply_follows([_change(e, active=True) for e in events], ctx)


@consumer.on(topics.USER_UNFOLLOWED, batch=True)
async def on_user_unfollowed(events: list[UserUnfollowed], ctx: Context) -> None:
    await _apply_follows([_change(e, active=False) for e in events], ctx)


async def _apply_follows(changes: list[FollowChange], ctx: Context) -> None:
    """The event is the truth for its pair (the follows table may lag): backfill on follow, trim on unfollow."""
    timelines, source = _stores(ctx)
    newest = newest_per_pair(changes)
    fresh = [c for c, newer in zip(newest, await timelines.newer_pairs(newest), strict=True) if newer]
    await timelines.drop_authors([(c.follower_id, c.followee_id) for c in fresh if not c.active])
    shown = await source.projected(fresh)
    # A follow the table shows is in any timeline rebuilt from now on: only existing timelines need its backfill.
    pairs = [(c, known) for c, known in zip(fresh, shown, strict=True) if c.active]
    have = await timelines.existing(c.follower_id for c, known in pairs if known)
    follows = [(c, not known) for c, known in pairs if not known or c.follower_id in have]
    for i in range(0, len(follows), BACKFILL_CHUNK):
        await _backfill(follows[i : i + BACKFILL_CHUNK], ctx.settings.fanout_max_followers, timelines, source)
    await timelines.record_pairs(fresh, shown)


async def _backfill(
    follows: list[tuple[FollowChange, bool]],
    max_followers: int,
    timelines: RedisTimelines,
    source: PostgresTimelineSource,
) -> None:
    """Add each followee's recent posts and reposts to the follower's timeline (created if missing when the flag says
    so)."""
    followees = {c.followee_id for c, _ in follows}
    _, big = await source.fanout_targets(followees, max_followers)
    big |= followees & await timelines.all_big()
    recent = await source.recent(followees - big, timelines.length)
    by_author = {author: [member(post_id, author) for post_id in ids] for author, ids in recent.items()}
    for author, values in (await source.recent_reposts(followees - big, timelines.length)).items():
        by_author.setdefault(author, []).extend(values)
    for value in await timelines.fresh(followees - big):  # posts and reposts the tables do not show yet
        by_author.setdefault(via_of(value), []).append(value)
    big_by_user: dict[str, list[str]] = defaultdict(list)
    added: dict[bool, dict[str, list[str]]] = {False: defaultdict(list), True: defaultdict(list)}
    for change, create in follows:
        if change.followee_id in big:
            big_by_user[change.follower_id].append(change.followee_id)
        else:
            added[create][change.follower_id].extend(by_author.get(change.followee_id, ()))
    await timelines.add_big(big_by_user)
    for create, members in added.items():
        await timelines.add(members, create=create)
