"""Markdown rendering figures: `render_post` against mistune alone and nh3 alone, on one synthetic corpus.

    .venv/bin/python bench/render.py [--posts 5000] [--runs 5] [--seed 42] [--cpu 1]

Prints a table and appends JSON lines to bench/results/render.jsonl. Method: ../shared/BENCH.md.
- Corpus: deterministic from the seed: 200-280 character posts, 0-3 hashtags from a Zipf-distributed tag set,
  a link in 30 %, a mention in 25 %, emphasis, code spans, strikethrough and line breaks in some.
- Ceilings, timed in every run right before and after `render_post`: mistune alone (same parser options and
  plugins as ours, mistune's own HTML renderer), nh3 alone (cleaning mistune's output with our allow-list), and
  both in a row. Each run times every variant once over the whole corpus; figures are medians of the runs with
  min and max, and the ratio of `render_post` to mistune alone is taken per run, then the median.
- Pinned to one core (`--cpu`, default 1 when there are two or more; `--cpu -1` leaves it unpinned).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import mistune

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench` as a package, run as a script

from bench import commit
from domain.markdown import render_post, sanitize

RESULTS = Path(__file__).with_name("results") / "render.jsonl"

_VOCABULARY = (
    "the a of to and in is it for on with that this was at by we from our new just today release team week "
    "build fix ship coffee run code review data bug deploy test server client cache query index stream event "
    "morning night weekend launch design idea thread read write great nice really finally again love hate "
    "python rust kafka redis postgres docker linux cloud api docs blog talk conference meetup podcast book"
)
_WORDS = tuple(_VOCABULARY.split())
_TAGS = [f"tag{i}" for i in range(60)] + ["python", "rust", "kafka", "café", "日本", "opensource", "devops", "ai"]
_HANDLES = [f"user{i}" for i in range(50)] + ["alice", "bob", "carol-dev", "dave42"]


def _word(rng: random.Random) -> str:
    word = rng.choice(_WORDS)
    roll = rng.random()
    if roll < 0.03:
        return f"**{word}**"
    if roll < 0.06:
        return f"_{word}_"
    if roll < 0.08:
        return f"`{word}()`"
    if roll < 0.09:
        return f"~~{word}~~"
    if roll < 0.10:
        return word + ".\n"
    return word


def corpus(n: int, seed: int) -> list[str]:
    """n posts of 200-280 characters, deterministic for a seed."""
    rng = random.Random(seed)
    tag_weights = [1 / (rank + 1) ** 1.1 for rank in range(len(_TAGS))]  # Zipf, s = 1.1
    posts: list[str] = []
    while len(posts) < n:
        extras = [f"#{tag}" for tag in rng.choices(_TAGS, tag_weights, k=rng.choice((0, 1, 1, 2, 2, 3)))]
        if rng.random() < 0.30:
            extras.append(f"https://example.com/{rng.choice(_WORDS)}/{rng.randrange(10**6)}")
        if rng.random() < 0.25:
            extras.append(f"@{rng.choice(_HANDLES)}")
        budget = rng.randint(200, 280) - sum(len(extra) + 1 for extra in extras)
        words: list[str] = []
        while sum(len(word) + 1 for word in words) < budget - 12:
            words.append(_word(rng))
        for extra in extras:
            words.insert(rng.randrange(len(words) + 1), extra)
        post = " ".join(words).replace("\n ", "\n")
        if 200 <= len(post) <= 280:
            posts.append(post)
    return posts


def _time(fn: Callable[[str], object], inputs: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) to call fn on every input."""
    wall, cpu = time.perf_counter(), time.process_time()
    for item in inputs:
        fn(item)
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--cpu", type=int, default=1 if (os.cpu_count() or 1) > 1 else -1)
    args = parser.parse_args()
    if args.cpu >= 0:
        os.sched_setaffinity(0, {args.cpu})

    posts = corpus(args.posts, args.seed)
    # The ceiling: mistune with the same parser options and plugins, its own renderer, raw HTML escaped.
    ceiling = mistune.create_markdown(escape=True, hard_wrap=True, plugins=["strikethrough", "url"])
    rendered = [str(ceiling(post)) for post in posts]
    variants: dict[str, tuple[Callable[[str], object], list[str]]] = {
        "mistune alone": (ceiling, posts),
        "nh3 alone": (sanitize, rendered),
        "mistune + nh3": (lambda post: sanitize(str(ceiling(post))), posts),
        "render_post": (render_post, posts),
    }
    for fn, inputs in variants.values():  # warm up
        for item in inputs[:200]:
            fn(item)

    rates: dict[str, list[float]] = {name: [] for name in variants}
    cpu_us: dict[str, list[float]] = {name: [] for name in variants}
    ratios: list[float] = []
    # Each run: the ceiling, nh3, ours, mistune + nh3, and the ceiling again; the ratio uses the mean of the two.
    order = ["mistune alone", "nh3 alone", "render_post", "mistune + nh3", "mistune alone"]
    for _ in range(args.runs):
        ceilings = []
        for name in order:
            wall, cpu = _time(*variants[name])
            rates[name].append(len(posts) / wall)
            cpu_us[name].append(cpu / len(posts) * 1e6)
            if name == "mistune alone":
                ceilings.append(len(posts) / wall)
        ratios.append(rates["render_post"][-1] / statistics.mean(ceilings))

    lengths = [len(post) for post in posts]
    meta = {
        "bench": "render",
        "commit": commit(),
        "at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "python": platform.python_version(),
        "mistune": version("mistune"),
        "nh3": version("nh3"),
        "cpu": args.cpu,
        "seed": args.seed,
        "posts": len(posts),
        "runs": args.runs,  # the ceiling is timed twice per run: its min/max cover both
        "post_chars_mean": round(statistics.mean(lengths), 1),
    }
    print(
        f"{len(posts)} posts (mean {meta['post_chars_mean']} chars, seed {args.seed}), {args.runs} runs, cpu {args.cpu}"
    )
    print(f"{'variant':<15} {'posts/s median':>15} {'min':>9} {'max':>9} {'CPU us/post':>12} {'vs mistune':>11}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as out:
        for name in variants:
            median = statistics.median(rates[name])
            ceiling_median = statistics.median(rates["mistune alone"])
            ratio = statistics.median(ratios) if name == "render_post" else median / ceiling_median
            cpu = statistics.median(cpu_us[name])
            low, high = min(rates[name]), max(rates[name])
            print(f"{name:<15} {median:>15,.0f} {low:>9,.0f} {high:>9,.0f} {cpu:>12.1f} {ratio:>11.2f}")
            row = {
                **meta,
                "variant": name,
                "posts_per_s": round(median),
                "min": round(min(rates[name])),
                "max": round(max(rates[name])),
                "cpu_us_per_post": round(cpu, 1),
                "ratio_to_mistune": round(ratio, 3),
            }
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"appended to {RESULTS}")


if __name__ == "__main__":
    main()
