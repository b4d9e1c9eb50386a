"""`chirp seed`: deterministic demo data published as events through the same pipeline the app uses.

The same seed gives the same events (ids included), so seeding twice changes nothing (consumers are idempotent).
Users have log-normal follower counts plus a few accounts with 10-20K followers (as many as the user count
allows); posts are 200-280 characters of varied Markdown with 0-3 hashtags from a Zipf-distributed tag set, a link
in 30 % of them, mentions and replies in some.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import accumulate

from ulid import ULID

from schemas.events import (
    Event,
    FollowData,
    PostCreated,
    PostCreatedData,
    UserFollowed,
    UserRegistered,
    UserRegisteredData,
)

DEFAULT_END = datetime(2026, 1, 1, tzinfo=UTC)
SPAN = timedelta(days=30)

# Word lists as one string each (split once at import) keep the module short.
_ADJECTIVES = "quiet brave lucky sunny rapid clever gentle bold calm eager fuzzy happy jolly keen lively merry".split()  # noqa: SIM905
_NOUNS = "otter falcon maple river comet pixel badger willow harbor tiger cedar lantern meadow raven quartz".split()  # noqa: SIM905
_WORDS = (  # noqa: SIM905
    "the a of and to in is it that for on with as at by this from we our you your they new just about today "
    "release build deploy kafka event stream read model replay timeline follow post query index cache latency "
    "throughput partition consumer producer schema migration review coffee morning weekend idea small big fast "
    "slow simple tricky bug fix test green ship learn share thought question answer team design"
).split()
_TOPICS = (  # noqa: SIM905
    "python rust golang kafka postgres redis devops sre webdev design music photography running cycling coffee "
    "books movies gaming ai ml data science opensource linux security cloud startups jobs travel food art climate "
    "space physics math chess football basketball tennis cooking gardening history writing poetry podcasts"
).split()
_LINKS = ("https://example.com/post/", "https://docs.example.org/guide/", "https://blog.example.net/")
_TAGS = [*_TOPICS, *(f"{a}{n}" for a in _ADJECTIVES for n in _NOUNS)]  # 40 topics + 225 long-tail tags
_TAG_WEIGHTS = list(accumulate(1 / (rank + 1) ** 1.1 for rank in range(len(_TAGS))))  # Zipf, s = 1.1


def _ulid(rng: random.Random, at: datetime) -> str:
    return str(ULID.from_bytes(int(at.timestamp() * 1000).to_bytes(6, "big") + rng.randbytes(10)))


def _handle(i: int) -> str:
    return f"{_ADJECTIVES[i % len(_ADJECTIVES)]}-{_NOUNS[(i // len(_ADJECTIVES)) % len(_NOUNS)]}{i}"


def _follower_counts(rng: random.Random, users: int) -> list[int]:
    counts = [min(users - 1, int(rng.lognormvariate(2.0, 1.2))) for _ in range(users)]
    for star in rng.sample(range(users), min(users, 3)):
        counts[star] = min(users - 1, rng.randint(10_000, 20_000))
    return counts


def _sentence(rng: random.Random) -> str:
    words = rng.choices(_WORDS, k=rng.randint(5, 12))
    return " ".join(words).capitalize() + rng.choice((".", ".", "!", "?"))


def _decorate(rng: random.Random, text: str) -> str:
    words = text.split(" ")
    i = rng.randrange(len(words))
    style = rng.choice(("**{}**", "_{}_", "`{}`", "~~{}~~", "{}", "{}"))
    words[i] = style.format(words[i]) if words[i].isalpha() else words[i]
    return " ".join(words)


def body(rng: random.Random, handles: list[str]) -> str:
    """One post: 200-280 characters of Markdown with 0-3 Zipf hashtags, a link 30 % of the time, maybe a mention."""
    tags = sorted({_TAGS[i] for i in _sample_tags(rng)})
    tail = [f"#{t}" for t in tags]
    if rng.random() < 0.3:
        tail.insert(0, f"[{rng.choice(_WORDS)}]({rng.choice(_LINKS)}{rng.randint(1, 99_999)})")
    if handles and rng.random() < 0.15:
        tail.insert(0, f"@{rng.choice(handles)}")
    ending = " ".join(tail)
    room = rng.randint(216, 280) - (len(ending) + 2 if ending else 0)
    shape = rng.random()  # most posts are prose; some are lists, some open with a quote
    lines: list[str] = []
    while sum(len(x) + 1 for x in lines) < room:
        line = _decorate(rng, _sentence(rng))
        lines.append(f"- {line}" if shape < 0.15 else f"> {line}" if shape < 0.2 and not lines else line)
    text = ("\n" if shape < 0.15 else " ").join(lines)
    full = text
    while len(text) > room - 1 and " " in text:
        text = text.rsplit(" ", 1)[0]
    if text != full:
        text = text.rstrip() + "…"
    return f"{text}\n\n{ending}" if ending else text


def _sample_tags(rng: random.Random) -> list[int]:
    k = rng.choices((0, 1, 2, 3), weights=(25, 40, 25, 10))[0]
    return [rng.choices(range(len(_TAGS)), cum_weights=_TAG_WEIGHTS)[0] for _ in range(k)]


def generate(users: int, posts: int, seed: int = 1, *, end: datetime = DEFAULT_END) -> Iterator[Event]:
    """The demo data set as events: every UserRegistered, then UserFollowed, then PostCreated (in time order)."""
    rng = random.Random(seed)
    start = end - SPAN
    ids = [_ulid(rng, start - timedelta(days=1, seconds=users - i)) for i in range(users)]
    handles = [_handle(i) for i in range(users)]
    for i in range(users):
        at = start - timedelta(days=1, seconds=users - i)
        data = UserRegisteredData(user_id=ids[i], handle=handles[i], display_name=handles[i].replace("-", " ").title())
        yield UserRegistered(id=_ulid(rng, at), occurred_at=at, payload=data, actor=ids[i])
    counts = _follower_counts(rng, users) if users > 1 else [0] * users
    follow_at = start - timedelta(hours=12)
    for followee, count in enumerate(counts):
        for other in rng.sample(range(users - 1), count):
            follower = other + 1 if other >= followee else other  # everyone but the followee
            payload = FollowData(follower_id=ids[follower], followee_id=ids[followee])
            yield UserFollowed(id=_ulid(rng, follow_at), occurred_at=follow_at, payload=payload, actor=ids[follower])
    weights = list(accumulate(1 + c**0.5 for c in counts))
    recent: list[str] = []
    for n in range(posts if users else 0):
        at = start + SPAN * (n + rng.random()) / max(posts, 1)
        author = rng.choices(range(users), cum_weights=weights)[0]
        post_id = _ulid(rng, at)
        reply_to = rng.choice(recent) if recent and rng.random() < 0.1 else None
        post = PostCreatedData(post_id=post_id, author_id=ids[author], body=body(rng, handles), reply_to=reply_to)
        yield PostCreated(id=_ulid(rng, at), occurred_at=at, payload=post, actor=ids[author])
        recent = [*recent[-99:], post_id]
