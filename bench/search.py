"""Search figures: two-word query latency and throughput over N posts, as a ratio to pgbench running the same SQL.

    .venv/bin/python bench/search.py [--posts 100000] [--seed 1] [--runs 5] [--seconds 8] [--concurrency 4]
    .venv/bin/python bench/search.py --posts 1000000        # the full-size target (loading takes a few minutes)

Prints a table and appends JSON lines to bench/results/search.jsonl. Method: ../shared/BENCH.md.
1. Data: N posts made deterministically from `--seed` (200-280 characters of Zipf-distributed words whose 100 most
   frequent are English stop words, 0-3 Zipf hashtags, 10,000 authors, 30 days of ULIDs) COPYed into the search
   tables of a schema of their own (`bench_search`, same DDL as migration 030, indexes built after the load). The
   load is kept between runs with the same size and seed.
2. Queries: 200 two-word queries (two different words, each drawn from the same Zipf distribution without the stop
   words), parsed by the API's own parser; and the 20 most frequent words alone (the most matches to rank).
3. Latency: every query in turn through the store adapter (`PostgresSearch.search_posts`, page of 20, snippets and
   authors included), one connection: p50/p95/p99/max per run, median of `--runs` runs (min-max).
4. Throughput: `--concurrency` connections looping over the queries for `--seconds`, queries/s per run.
5. Ceiling: `pgbench -f` with the same statement (parameters written in as literals, one script per query) at the
   same concurrency, run before and after (4); the ratio is adapter queries/s over the pgbench median.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench` as a package, run as a script

import asyncpg

from bench import record
from chirp.settings import Settings
from store.postgres import MIGRATIONS, connect
from store.search import CANDIDATES, PLAN_ONCE, SEARCH_POSTS, PostgresSearch
from store.search_query import ParsedQuery, parse_query

RESULTS = Path(__file__).with_name("results") / "search.jsonl"
SCHEMA = "bench_search"
PGBENCH = "/usr/lib/postgresql/15/bin/pgbench"
VOCABULARY = 50_000
TAGS = 5_000
AUTHORS = 10_000
QUERIES = 200
PGBENCH_SCRIPTS = 100  # pgbench takes at most 128 scripts
_STOP = (
    "the of and to a in is it you that he was for on are with as i his they be at one have this from or had by but"
    " what some we can out other were all there when up use your how said an each she which do their if will way"
    " about many then them would so these her him into has more could go no my than been who its now did get come"
    " made may only over also after just most any very through our me should because those while where both few"
)
STOP_WORDS = _STOP.split()
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


# Data ---------------------------------------------------------------------------------------------------------


def zipf_cum(n: int, s: float = 1.07) -> list[float]:
    """Cumulative Zipf weights of ranks 1..n."""
    return list(itertools.accumulate(1 / (k**s) for k in range(1, n + 1)))


def pseudo_words(rng: random.Random, n: int, prefix: str = "") -> list[str]:
    """`n` distinct pronounceable letter-only words."""
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    found: dict[str, None] = {}
    while len(found) < n:
        word = prefix + "".join(rng.choice(syllables) for _ in range(rng.randint(2, 4)))
        if word not in STOP_WORDS:
            found[word] = None
    return list(found)


def ulid(ms: int, rng: random.Random) -> str:
    value = (ms << 80) | rng.getrandbits(80)
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


class Corpus:
    """The deterministic synthetic corpus of one seed."""

    def __init__(self, seed: int) -> None:
        rng = random.Random(seed)
        self.seed = seed
        self.words = STOP_WORDS + pseudo_words(rng, VOCABULARY - len(STOP_WORDS))
        self.word_cum = zipf_cum(len(self.words))
        self.tags = pseudo_words(rng, TAGS, prefix="t")
        self.tag_cum = zipf_cum(TAGS)
        self.content_cum = zipf_cum(len(self.words) - len(STOP_WORDS))

    def posts(self, n: int) -> Iterator[tuple[Any, ...]]:
        """(post_id, author_id, body, html, text, hashtags, mentions, reply_to, created_at, parsed_at) rows."""
        rng = random.Random(self.seed * 7919 + n)
        end = datetime(2026, 1, 31, tzinfo=UTC)
        start_ms = int((end - timedelta(days=30)).timestamp() * 1000)
        step = 30 * 86400 * 1000 / n
        for i in range(n):
            at_ms = start_ms + int(i * step)
            target = rng.randint(200, 280)
            tags = list(dict.fromkeys(rng.choices(self.tags, cum_weights=self.tag_cum, k=rng.choice((0, 1, 1, 2, 3)))))
            words = rng.choices(self.words, cum_weights=self.word_cum, k=70)
            text = " ".join(words)[: target - sum(len(t) + 2 for t in tags)].rsplit(" ", 1)[0]
            text = " ".join([text, *(f"#{t}" for t in tags)])
            created = datetime.fromtimestamp(at_ms / 1000, UTC)
            author = f"bu{int(rng.paretovariate(1.2)) % AUTHORS}"
            yield (ulid(at_ms, rng), author, text, f"<p>{text}</p>", text, tags, [], None, created, created)

    def queries(self, n: int) -> list[str]:
        """`n` queries of two different words, each drawn from the Zipf distribution of the content words."""
        rng = random.Random(self.seed * 104729)
        content = self.words[len(STOP_WORDS) :]
        found: list[str] = []
        while len(found) < n:
            a, b = rng.choices(content, cum_weights=self.content_cum, k=2)
            if a != b:
                found.append(f"{a} {b}")
        return found

    def common_words(self, n: int) -> list[str]:
        """The `n` most frequent content words (one-word queries: the most matches to rank)."""
        return self.words[len(STOP_WORDS) : len(STOP_WORDS) + n]


def _statements(kind: str) -> list[str]:
    """The statements of migration 030 creating tables (`table`) or indexes (`index`) of the search model."""
    sql = (MIGRATIONS / "030_search.sql").read_text()
    sql = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    found = [s.strip() for s in sql.split(";") if s.strip()]
    return [s for s in found if s.upper().startswith(f"CREATE {kind.upper()}")]


async def load(pool: asyncpg.Pool, corpus: Corpus, n: int, reload: bool) -> float | None:
    """Load `n` posts into the bench schema unless that exact load is there; returns the seconds taken (None: kept)."""
    async with pool.acquire() as conn:
        kept = False
        ddl = hashlib.sha1("".join(_statements("table") + _statements("index")).encode()).hexdigest()
        if await conn.fetchval(f"SELECT to_regclass('{SCHEMA}.meta') IS NOT NULL"):
            sql = f"SELECT EXISTS (SELECT 1 FROM {SCHEMA}.meta m WHERE posts = $1 AND seed = $2"
            sql += " AND to_jsonb(m)->>'ddl' = $3)"  # an older load has no ddl column: loaded again
            kept = await conn.fetchval(sql, n, corpus.seed, ddl)
        if kept and not reload:
            return None
        started = time.perf_counter()
        await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA}")
        await conn.execute(f"SET search_path = {SCHEMA}, public")
        for statement in _statements("table"):
            await conn.execute(statement)
        columns = ["post_id", "author_id", "body", "html", "text", "hashtags", "mentions", "reply_to", "created_at"]
        columns.append("parsed_at")
        rows = corpus.posts(n)
        while chunk := list(itertools.islice(rows, 20_000)):
            await conn.copy_records_to_table("search_posts", records=chunk, columns=columns, schema_name=SCHEMA)
        users = [(f"bu{i}", f"bench-{i}", datetime(2026, 1, 1, tzinfo=UTC), f"Bench User {i}") for i in range(AUTHORS)]
        await conn.copy_records_to_table(
            "search_users",
            records=users,
            columns=["user_id", "handle", "handle_at", "display_name"],
            schema_name=SCHEMA,
        )
        await conn.execute("SET maintenance_work_mem = '256MB'")
        for statement in _statements("index"):
            await conn.execute(statement)
        await conn.execute(f"VACUUM ANALYZE {SCHEMA}.search_posts")
        await conn.execute(f"VACUUM ANALYZE {SCHEMA}.search_users")
        await conn.execute(f"CREATE TABLE {SCHEMA}.meta (posts int, seed int, ddl text)")
        await conn.execute(f"INSERT INTO {SCHEMA}.meta VALUES ($1, $2, $3)", n, corpus.seed, ddl)
        return time.perf_counter() - started


# Measuring ----------------------------------------------------------------------------------------------------


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99), "max": round(ordered[-1], 2)}


def summary(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 2), "min": round(min(values), 2), "max": round(max(values), 2)}


async def latency_run(index: PostgresSearch, queries: list[ParsedQuery]) -> tuple[dict[str, float], float]:
    ref = datetime(2026, 1, 31, tzinfo=UTC)
    samples = []
    hits = 0
    for query in queries:
        started = time.perf_counter()
        page = await index.search_posts(query, offset=0, limit=20, ref=ref, ceiling=None)
        samples.append((time.perf_counter() - started) * 1000)
        hits += len(page.items)
    return percentiles(samples), hits / len(queries)


async def throughput_run(index: PostgresSearch, queries: list[ParsedQuery], workers: int, seconds: float) -> float:
    ref = datetime(2026, 1, 31, tzinfo=UTC)
    deadline = time.perf_counter() + seconds
    done = 0

    async def worker(offset: int) -> None:
        nonlocal done
        for query in itertools.islice(itertools.cycle(queries), offset, None):
            if time.perf_counter() > deadline:
                return
            await index.search_posts(query, offset=0, limit=20, ref=ref, ceiling=None)
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(i * 37) for i in range(workers)))
    return done / (time.perf_counter() - started)


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime):
        return f"'{value.isoformat()}'"
    if isinstance(value, list):
        return "ARRAY[" + ",".join(_literal(v) for v in value) + "]"
    return "'" + str(value).replace("'", "''") + "'"


def pgbench_script(query: ParsedQuery) -> str:
    """SEARCH_POSTS with this query's parameters written in (what the adapter sends, minus the protocol)."""
    groups, texts, negated = query.arrays()
    ref = datetime(2026, 1, 31, tzinfo=UTC)
    args = [
        groups,
        texts,
        negated,
        list(query.tags),
        list(query.authors),
        None,
        ref,
        0,
        20,
        CANDIDATES,
    ]
    empty_arrays = {4: "'{}'", 5: "'{}'"}  # ARRAY[] needs a type; the statement casts each parameter anyway

    def substitute(match: re.Match[str]) -> str:
        i = int(match.group(1))
        value = args[i - 1]
        return empty_arrays[i] if value == [] and i in empty_arrays else _literal(value)

    return re.sub(r"\$(\d+)", substitute, SEARCH_POSTS).strip() + ";\n"


def pgbench(settings: Settings, scripts: list[Path], clients: int, seconds: int) -> dict[str, float]:
    """pgbench over `scripts` (picked at random per transaction): tps and mean latency in ms."""
    env = {
        **os.environ,
        "PGPASSWORD": settings.postgres_password.get_secret_value(),
        "PGOPTIONS": f"-c search_path={SCHEMA},public"
        + "".join(f" -c {key}={value}" for key, value in PLAN_ONCE.items()),  # as the adapter's connections
        "PGSSLMODE": settings.postgres_sslmode,  # as the adapter connects
    }
    cmd = [PGBENCH, "-n", "-M", "prepared", "-c", str(clients), "-j", str(min(clients, 2)), "-T", str(seconds)]
    cmd += ["-h", settings.postgres_host, "-p", str(settings.postgres_port), "-U", settings.postgres_user]
    for script in scripts:
        cmd += ["-f", str(script)]
    out = subprocess.run([*cmd, settings.postgres_db], env=env, capture_output=True, text=True, check=True).stdout
    tps = float(re.search(r"tps = ([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = float(re.search(r"latency average = ([\d.]+) ms", out).group(1))  # type: ignore[union-attr]
    return {"tps": tps, "latency_avg_ms": lat}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--reload", action="store_true", help="Load the posts again even if that load is there.")
    args = parser.parse_args()
    settings = Settings()
    corpus = Corpus(args.seed)
    setup = await connect(settings, max_size=2)
    load_s = await load(setup, corpus, args.posts, args.reload)
    await setup.close()
    pool = await connect(  # as the gateway's search pool, on the bench schema
        settings,
        migrate=False,
        min_size=args.concurrency,
        max_size=args.concurrency,
        server_settings={"search_path": f"{SCHEMA},public", **PLAN_ONCE},
    )
    index = PostgresSearch(pool)
    texts = corpus.queries(QUERIES)
    queries = [parse_query(q) for q in texts]
    with tempfile.TemporaryDirectory() as tmp:
        scripts = []
        for i, query in enumerate(queries[:PGBENCH_SCRIPTS]):
            path = Path(tmp) / f"q{i}.sql"
            path.write_text(pgbench_script(query))
            scripts.append(path)
        await latency_run(index, queries)  # warm the cache and the prepared statement
        ceiling = [pgbench(settings, scripts, args.concurrency, args.seconds)]
        single = [pgbench(settings, scripts, 1, args.seconds)]
        common = [parse_query(w) for w in corpus.common_words(20)]
        latencies, common_latencies, rates, mean_hits = [], [], [], 0.0
        for _ in range(args.runs):
            lat, mean_hits = await latency_run(index, queries)
            latencies.append(lat)
            common_latencies.append((await latency_run(index, common))[0])
            rates.append(await throughput_run(index, queries, args.concurrency, args.seconds))
        ceiling.append(pgbench(settings, scripts, args.concurrency, args.seconds))
        single.append(pgbench(settings, scripts, 1, args.seconds))
    await pool.close()
    pg_tps = statistics.median(c["tps"] for c in ceiling)
    result = {
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "posts": args.posts,
        "seed": args.seed,
        "load_seconds": round(load_s, 1) if load_s is not None else "kept",
        "queries": QUERIES,
        "mean_hits_per_page": round(mean_hits, 1),
        "adapter_latency_ms": {k: summary([lat[k] for lat in latencies]) for k in ("p50", "p95", "p99", "max")},
        "common_word_latency_ms": {k: summary([lat[k] for lat in common_latencies]) for k in ("p50", "p95", "max")},
        "pgbench_c1_latency_avg_ms": summary([s["latency_avg_ms"] for s in single]),
        "concurrency": args.concurrency,
        "adapter_queries_per_s": summary(rates),
        "pgbench_tps": summary([c["tps"] for c in ceiling]),
        "adapter_to_pgbench_ratio": round(statistics.median(rates) / pg_tps, 3),
        "example_queries": texts[:5],
    }
    record(RESULTS, result)


if __name__ == "__main__":
    asyncio.run(main())
