"""Redis in a shadow namespace: a client that rewrites the keys under a consumer's prefixes, and the atomic swap.

Consumers write Redis keys by name (`timeline:{user}`); a replay must build the same keys somewhere readers do not
look. The client below prepends a shadow root to every *key argument* that starts with one of the consumer's
prefixes. Which arguments are keys comes from the server's own `COMMAND` key specifications, so pipelines, scripts
(`EVALSHA numkeys ...`) and multi-key commands are rewritten exactly, and values that merely look like keys are not.
A `SCAN ... MATCH` pattern under a prefix gets the root too: it lists the shadow's keys (named with the root).
Names are rewritten when a command is sent (a pipeline's when it executes), and the swap runs with the client's
`Gate` closed: a command sent before it went to the shadow and is moved with it, one sent after it reaches the
live keys, and none lands in the shadow namespace once it has been swapped out (a consumer's background task, like
trending's ranking refresher, keeps running through a replay).

Every shadow root a replay creates is listed in the set `ROOTS` until its keys are gone, so the next replay finds
what an interrupted one left without scanning the key space.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from chirp.redis_client import HiredisPacking

KeySpecs = dict[str, list[dict[str, Any]]]
ROOTS = "~replay-roots"


async def load_key_specs(client: aioredis.Redis) -> KeySpecs:
    """Every command's key specifications, as the server describes them."""
    commands = await client.command()
    return {name.lower(): info.get("key_specifications") or [] for name, info in commands.items()}


def _text(arg: Any) -> str | None:
    if isinstance(arg, str):
        return arg
    if isinstance(arg, bytes):
        return arg.decode(errors="replace")
    return None


def _begin(spec: dict[str, Any], argv: list[Any]) -> int | None:
    begin = spec["begin_search"]
    if begin["type"] == "index":
        return int(begin["spec"]["index"])
    if begin["type"] == "keyword":
        keyword, start = str(begin["spec"]["keyword"]).upper(), int(begin["spec"]["startfrom"])
        indices = range(start, len(argv)) if start > 0 else range(len(argv) + start, 0, -1)
        for i in indices:
            if (_text(argv[i]) or "").upper() == keyword:
                return i + 1
    return None


def key_positions(specs: KeySpecs, argv: list[Any]) -> list[int]:
    """Indices of the key arguments in `argv` (argv[0] is the command name)."""
    positions: list[int] = []
    for spec in specs.get((_text(argv[0]) or "").lower(), ()):
        start = _begin(spec, argv)
        if start is None or start >= len(argv):
            continue
        find = spec["find_keys"]
        if find["type"] == "range":
            last, step, limit = int(find["spec"]["lastkey"]), int(find["spec"]["keystep"]), int(find["spec"]["limit"])
            end = start + last if last >= 0 else len(argv) + last
            if last == -1 and limit > 1:
                end = start + (len(argv) - start) // limit - 1
            positions.extend(range(start, min(end, len(argv) - 1) + 1, max(step, 1)))
        elif find["type"] == "keynum":
            spec = find["spec"]
            numidx, first, step = int(spec["keynumidx"]), int(spec["firstkey"]), int(spec["keystep"])
            count = int(_text(argv[start + numidx]) or argv[start + numidx])
            first_at = start + first
            positions.extend(range(first_at, min(first_at + count * max(step, 1), len(argv)), max(step, 1)))
    return positions


_PUBLISH = {"PUBLISH", "SPUBLISH"}


class KeyRewriter:
    """Prepends `root` to key arguments under `prefixes` while `enabled` (a replay turns it off after the swap)."""

    def __init__(self, specs: KeySpecs, prefixes: tuple[str, ...], root: str) -> None:
        self.specs = specs
        self.prefixes = prefixes
        self.root = root
        self.enabled = True

    def silenced(self, args: tuple[Any, ...]) -> bool:
        """Whether this is an announcement (PUBLISH) a rebuild does not make: it is not sent, its reply is 0."""
        return self.enabled and bool(args) and (_text(args[0]) or "").upper() in _PUBLISH

    def rewrite(self, args: tuple[Any, ...]) -> tuple[Any, ...]:
        if not self.enabled or not args:
            return args
        argv = [*str(args[0]).split(" "), *args[1:]] if isinstance(args[0], str) and " " in args[0] else list(args)
        for i in key_positions(self.specs, argv):
            key = _text(argv[i])
            if key is not None and key.startswith(self.prefixes):
                argv[i] = self.root + key
        if (_text(argv[0]) or "").upper() == "SCAN":  # a pattern under a prefix lists the shadow's keys (as named)
            for i in range(2, len(argv) - 1):
                pattern = _text(argv[i + 1])
                if (_text(argv[i]) or "").upper() == "MATCH" and pattern and pattern.startswith(self.prefixes):
                    argv[i + 1] = _glob_escape(self.root) + pattern
        return tuple(argv)


class Gate:
    """Commands pass while it is open; `closed()` waits for those in flight, and holds new ones until it reopens."""

    def __init__(self) -> None:
        self._open, self._idle = asyncio.Event(), asyncio.Event()
        self._open.set()
        self._idle.set()
        self._busy = 0

    async def enter(self) -> None:
        while not self._open.is_set():
            await self._open.wait()
        self._busy += 1
        self._idle.clear()

    def leave(self) -> None:
        self._busy -= 1
        if not self._busy:
            self._idle.set()

    @asynccontextmanager
    async def closed(self) -> AsyncIterator[None]:
        self._open.clear()
        try:
            await self._idle.wait()
            yield
        finally:
            self._open.set()


async def _send(
    gate: Gate, rewriter: KeyRewriter, send: Callable[..., Awaitable[Any]], args: tuple[Any, ...], options: dict
) -> Any:
    """One command through the gate: rewritten and sent, or (an announcement while building) answered 0."""
    await gate.enter()
    try:
        return 0 if rewriter.silenced(args) else await send(*rewriter.rewrite(args), **options)
    finally:
        gate.leave()


class ShadowRedis(aioredis.Redis):
    """A Redis client whose writes and reads under the consumer's prefixes go to the shadow namespace."""

    rewriter: KeyRewriter
    gate: Gate

    @property
    def announcing(self) -> bool:
        """False while PUBLISH is silenced (a handler may skip preparing announcements: see `Context`)."""
        return not self.rewriter.enabled

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        return await _send(self.gate, self.rewriter, super().execute_command, args, options)

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        pipe = ShadowPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)
        pipe.rewriter, pipe.gate = self.rewriter, self.gate
        return pipe


class ShadowPipeline(Pipeline):
    """Queues commands as given; names are rewritten, and announcements left out (reply 0), when it executes."""

    rewriter: KeyRewriter
    gate: Gate
    executing = False  # within `execute`, which has passed the gate (and loads scripts with immediate commands)

    async def immediate_execute_command(self, *args: Any, **options: Any) -> Any:
        if self.executing:
            return await super().immediate_execute_command(*args, **options)
        return await _send(self.gate, self.rewriter, super().immediate_execute_command, args, options)

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        await self.gate.enter()
        self.executing = True
        try:
            queued, silenced = self.command_stack, []
            self.command_stack = []
            for position, (args, options) in enumerate(queued):
                if self.rewriter.silenced(args):
                    silenced.append(position)
                else:
                    self.command_stack.append((self.rewriter.rewrite(args), options))
            results = list(await super().execute(raise_on_error)) if self.command_stack or self.watching else []
        finally:
            self.executing = False
            self.gate.leave()
        for position in silenced:
            results.insert(position, 0)
        return results


async def shadow_client(url: str, prefixes: tuple[str, ...], root: str) -> ShadowRedis:
    """A `ShadowRedis` on `url` (decode_responses=True, as consumers get)."""
    client: ShadowRedis = ShadowRedis.from_url(url, decode_responses=True, connection_class=HiredisPacking)  # type: ignore[assignment]
    client.rewriter, client.gate = KeyRewriter({}, prefixes, root), Gate()  # no specs yet: COMMAND has no keys
    client.rewriter.specs = await load_key_specs(client)
    return client


def _glob_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


async def keys_under(client: aioredis.Redis, prefixes: tuple[str, ...]) -> list[str]:
    """Every key starting with one of `prefixes` (SCAN, so Redis keeps serving)."""
    found: list[str] = []
    for prefix in prefixes:
        async for key in client.scan_iter(match=f"{_glob_escape(prefix)}*", count=1000):
            found.append(key if isinstance(key, str) else key.decode())
    return found


async def delete_keys(client: aioredis.Redis, keys: list[str]) -> None:
    for i in range(0, len(keys), 1000):
        await client.unlink(*keys[i : i + 1000])


async def copy_keys(client: aioredis.Redis, prefixes: tuple[str, ...], root: str) -> int:
    """Copy the live keys into the shadow namespace (a replay from a point in time starts from the live model)."""
    keys = await keys_under(client, prefixes)
    for i in range(0, len(keys), 500):
        async with client.pipeline(transaction=False) as pipe:
            for key in keys[i : i + 500]:
                pipe.copy(key, root + key, replace=True)
            await pipe.execute()
    return len(keys)


# One script, so Redis applies it atomically: readers see the old keys or the new ones, never a mix. The key names
# wait in two Redis lists written beforehand (page by page, while Redis keeps serving), so neither a model of
# millions of keys nor its names pass through this process; the script blocks Redis only for the moves.
# KEYS: the list of shadow keys, the list of live keys.  ARGV: the shadow root.
_SWAP = """
local cut, moved = string.len(ARGV[1]) + 1, 0
for i = 0, redis.call('LLEN', KEYS[2]) - 1, 1000 do
  for _, key in ipairs(redis.call('LRANGE', KEYS[2], i, i + 999)) do
    if redis.call('EXISTS', ARGV[1] .. key) == 0 then redis.call('UNLINK', key) end
  end
end
for i = 0, redis.call('LLEN', KEYS[1]) - 1, 1000 do
  for _, key in ipairs(redis.call('LRANGE', KEYS[1], i, i + 999)) do
    if redis.call('EXISTS', key) == 1 then
      redis.call('RENAME', key, string.sub(key, cut))
      moved = moved + 1
    end
  end
end
redis.call('UNLINK', KEYS[1], KEYS[2])
return moved
"""

# One SCAN page, its keys sorted into the two lists the swap reads: one pass over the key space for all prefixes,
# and the names never travel to this process and back.
# KEYS: the list of shadow keys, the list of live keys.  ARGV: cursor, COUNT, the shadow root, the prefixes.
_LIST_PAGE = """
local found = redis.call('SCAN', ARGV[1], 'COUNT', ARGV[2])
local root, shadow, live = ARGV[3], {}, {}
local first = string.byte(root, 1)
for _, key in ipairs(found[2]) do
  local in_shadow = string.byte(key, 1) == first and string.sub(key, 1, #root) == root
  local rest = in_shadow and string.sub(key, #root + 1) or key
  for i = 4, #ARGV do
    if string.sub(rest, 1, #ARGV[i]) == ARGV[i] then
      table.insert(in_shadow and shadow or live, key)
      break
    end
  end
end
for i = 1, #shadow, 1000 do redis.call('RPUSH', KEYS[1], unpack(shadow, i, math.min(i + 999, #shadow))) end
for i = 1, #live, 1000 do redis.call('RPUSH', KEYS[2], unpack(live, i, math.min(i + 999, #live))) end
return found[1]
"""


async def _list_keys(
    client: aioredis.Redis, prefixes: tuple[str, ...], root: str, moving: str, stale: str, size: int = 5000
) -> None:
    """The shadow keys (`root` + a prefix) into the list `moving`, the live ones (a prefix) into `stale`: one pass
    over the key space, a SCAN page per script call (Redis serves other clients between them)."""
    page = client.register_script(_LIST_PAGE)
    cursor = "0"
    while True:
        found = await page(keys=[moving, stale], args=[cursor, size, root, *prefixes])
        cursor = found if isinstance(found, str) else found.decode()
        if cursor == "0":
            return


async def swap(client: aioredis.Redis, prefixes: tuple[str, ...], root: str) -> int:
    """Replace the live keys under `prefixes` by the shadow ones in one atomic script; returns the keys moved.

    Redis is busy with the script for about 6 s per million keys moved over live ones (so the call waits without
    timeout).
    """
    moving, stale = f"{root}~swap:moving", f"{root}~swap:stale"
    await client.unlink(moving, stale)
    await _list_keys(client, prefixes, root, moving, stale)  # the script deletes the live keys the shadow lacks
    pool = client.connection_pool
    kwargs = {**pool.connection_kwargs, "socket_timeout": None}
    patient = aioredis.Redis(connection_pool=aioredis.ConnectionPool(connection_class=pool.connection_class, **kwargs))
    try:
        return int(await patient.eval(_SWAP, 2, moving, stale, root))
    finally:
        await patient.aclose(close_connection_pool=True)
