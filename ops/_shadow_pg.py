"""PostgreSQL in a shadow schema: clone a read model's tables there, then swap them with the live ones atomically.

The consumers' SQL names tables without a schema, so a pool whose `search_path` starts with the shadow schema
makes the same handler code write the shadow copy. The swap moves tables between schemas (`ALTER TABLE ... SET
SCHEMA`) inside one transaction: readers see the old tables or the new ones, never a mix.
"""

from __future__ import annotations

import asyncio

import asyncpg
import orjson

from chirp.settings import Settings

# Full-text and array indexes cost the most to keep up row by row and are used only by readers, never by a
# handler's own lookups: a shadow copy gets them once its rows are in, built in one sorted pass.
LATE_METHODS = frozenset({"gin", "gist", "rum"})
LATE_INDEX_MEMORY = "256MB"


class ShadowError(Exception):
    """A read model that cannot be rebuilt in a shadow schema (the message says why)."""


def ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


async def _codecs(conn: asyncpg.Connection) -> None:
    # The same json/jsonb codecs store.postgres gives the consumers' pool.
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(
            typ, encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads, schema="pg_catalog"
        )


async def pool(settings: Settings, search_path: str | None = None, max_size: int = 10) -> asyncpg.Pool:
    """A pool on the app database, optionally with its own `search_path` (no migrations run)."""
    server_settings = {"search_path": search_path} if search_path else {}
    return await asyncpg.create_pool(
        settings.postgres_dsn(), min_size=1, max_size=max_size, init=_codecs, server_settings=server_settings
    )


async def live_schema(conn: asyncpg.Connection, table: str) -> str | None:
    """The schema the live `table` resolves to on the default search_path, or None when it does not exist."""
    return await conn.fetchval(
        "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1)",
        ident(table),
    )


async def clone_table(
    conn: asyncpg.Connection, table: str, source: str, target: str, for_readers: frozenset[str] = frozenset()
) -> list[str]:
    """Create `target.table` with the columns, defaults, constraints and indexes (same names) of `source.table`.

    Indexes of the `LATE_METHODS`, and those named in `for_readers` (never used by a handler), are not
    created: their definitions are returned, for `create_late_indexes` once the rows are in.
    """
    src, dst = f"{ident(source)}.{ident(table)}", f"{ident(target)}.{ident(table)}"
    oid = await conn.fetchval("SELECT $1::regclass::oid", src)
    serial = await conn.fetchval(
        "SELECT count(*) FROM pg_attrdef WHERE adrelid = $1 AND pg_get_expr(adbin, adrelid) LIKE 'nextval(%'", oid
    )
    if serial:
        raise ShadowError(f"{table} has a serial column: use GENERATED ... AS IDENTITY so a copy gets its own sequence")
    foreign = await conn.fetchval(
        "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND (conrelid = $1 OR confrelid = $1)", oid
    )
    if foreign:
        raise ShadowError(f"{table} has foreign keys: read-model tables must not (they are rebuilt independently)")
    await conn.execute(
        f"CREATE TABLE {dst} (LIKE {src} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED"
        " INCLUDING IDENTITY INCLUDING STORAGE INCLUDING COMMENTS INCLUDING COMPRESSION INCLUDING STATISTICS)"
    )
    for row in await conn.fetch(
        "SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint WHERE conrelid = $1"
        " AND contype IN ('p', 'u', 'x') ORDER BY contype",
        oid,
    ):
        await conn.execute(f"ALTER TABLE {dst} ADD CONSTRAINT {ident(row['conname'])} {row['def']}")
    async with conn.transaction():
        # With an empty search_path, pg_get_indexdef names every table and operator class with its schema.
        await conn.execute("SET LOCAL search_path = pg_catalog")
        definitions = await conn.fetch(
            "SELECT pg_get_indexdef(i.indexrelid) AS def, a.amname, c.relname FROM pg_index i"
            " JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam WHERE i.indrelid = $1"
            " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid AND c.conrelid = $1)",
            oid,
        )
    # pg_get_indexdef quotes names only where needed: match it with PostgreSQL's own quote_ident.
    src_pg, dst_pg = await conn.fetchrow(
        "SELECT quote_ident($1) || '.' || quote_ident($3), quote_ident($2) || '.' || quote_ident($3)",
        source,
        target,
        table,
    )
    late: list[str] = []
    for row in definitions:
        definition: str = row["def"]
        for on in (" ON ONLY ", " ON "):
            if f"{on}{src_pg} " in definition:
                definition = definition.replace(f"{on}{src_pg} ", f"{on}{dst_pg} ", 1)
                break
        else:
            raise ShadowError(f"cannot place index of {table} in the shadow schema: {definition}")
        if row["amname"] in LATE_METHODS or row["relname"] in for_readers:  # a setup may create it first: kept
            late.append(definition.replace("CREATE INDEX ", "CREATE INDEX IF NOT EXISTS ", 1))
        else:
            await conn.execute(definition)
    return late


async def create_late_indexes(pool: asyncpg.Pool, definitions: list[str], at_once: int = 2) -> None:
    """Build the indexes `clone_table` left out, each in one pass over the rows (with memory to sort them in),
    `at_once` side by side on connections of `pool` (a full-text index is built by one backend: one core)."""
    slots = asyncio.Semaphore(at_once)

    async def build(definition: str) -> None:
        async with slots, pool.acquire() as conn, conn.transaction():
            await conn.execute(f"SET LOCAL maintenance_work_mem = '{LATE_INDEX_MEMORY}'")
            await conn.execute(definition)

    await asyncio.gather(*(build(d) for d in sorted(definitions, key=_build_cost, reverse=True)))


def _build_cost(definition: str) -> int:
    """Full-text and array indexes take longest: started first, the others fill the other slots meanwhile."""
    return int(any(f"USING {method} " in definition for method in LATE_METHODS))


async def drop_schema(conn: asyncpg.Connection, schema: str) -> None:
    await conn.execute(f"DROP SCHEMA IF EXISTS {ident(schema)} CASCADE")


async def schemas_like(conn: asyncpg.Connection, pattern: str) -> list[str]:
    """Schemas whose name matches a LIKE pattern (leftovers of an interrupted replay)."""
    rows = await conn.fetch("SELECT nspname FROM pg_namespace WHERE nspname LIKE $1", pattern)
    return [r["nspname"] for r in rows]


async def copy_rows(conn: asyncpg.Connection, table: str, source: str, target: str) -> int:
    """Copy every row of `source.table` into `target.table` (a replay from a point in time starts from them)."""
    columns = await conn.fetch(
        "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped"
        " AND attgenerated = '' ORDER BY attnum",
        f"{ident(source)}.{ident(table)}",
    )
    names = ", ".join(ident(c["attname"]) for c in columns)
    status = await conn.execute(
        f"INSERT INTO {ident(target)}.{ident(table)} ({names}) OVERRIDING SYSTEM VALUE"
        f" SELECT {names} FROM {ident(source)}.{ident(table)}"
    )
    return int(status.rsplit(" ", 1)[-1])
