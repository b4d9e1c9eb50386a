"""How trending is scored: windows of time buckets, the score against a baseline, and the deterministic order.

Pure functions (unit tested without Redis). The score is Mastodon's: with `observed` the distinct people in the
window and `expected` those in the period of the same length just before it (at least 1),
`score = (observed - expected)^2 / expected` when observed exceeds expected, else 0. A tag as busy as it was the
period before scores about 0 however busy it is; a burst of new people scores high at once; one person counts once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

SPARK_POINTS = 12
MIN_COUNT = 2  # fewer distinct people than this never trend


@dataclass(frozen=True, slots=True)
class Window:
    """A ranking window: `size` buckets of `res_s` seconds (`res`), `per_point` buckets per sparkline point."""

    name: str
    res: str
    res_s: int
    size: int
    per_point: int

    def bucket(self, now: float) -> int:
        return int(now // self.res_s)

    def buckets(self, now: float, *, baseline: bool = False) -> range:
        """The window's buckets ending with the one holding `now`; with `baseline`, the same span just before."""
        last = self.bucket(now) - (self.size if baseline else 0)
        return range(last - self.size + 1, last + 1)


# 15m and 1h on minute buckets; 24h on hour buckets (its newest bucket is the hour in progress).
WINDOWS = {
    "15m": Window("15m", "m", 60, 15, 1),
    "1h": Window("1h", "m", 60, 60, 5),
    "24h": Window("24h", "h", 3600, 24, 2),
}


def slices(window: Window, now: float) -> list[range]:
    """The buckets of each sparkline point, oldest first, the last one holding `now`."""
    last = window.bucket(now)
    n = window.per_point
    return [
        range(last - (SPARK_POINTS - i) * n + 1, last - (SPARK_POINTS - 1 - i) * n + 1) for i in range(SPARK_POINTS)
    ]


def score(observed: int, baseline: int) -> float:
    """How far `observed` distinct people are above the `baseline` period's, relative to it."""
    expected = max(baseline, 1)
    if observed <= expected:
        return 0.0
    return round((observed - expected) ** 2 / expected, 4)


@dataclass(frozen=True, slots=True)
class Ranked:
    name: str
    count: int
    score: float


def rank(items: Iterable[Ranked]) -> list[Ranked]:
    """Items that trend (score > 0, at least MIN_COUNT people), by score descending, then name ascending."""
    return sorted((i for i in items if i.score > 0 and i.count >= MIN_COUNT), key=lambda i: (-i.score, i.name))
