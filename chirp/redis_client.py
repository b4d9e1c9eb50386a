"""Redis clients of every process: redis-py's asyncio client, with commands packed and replies read faster, or
its cluster client when `redis_cluster` is set (docs/scaling.md)."""

from __future__ import annotations

import asyncio
import collections
import inspect
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

import hiredis
import redis.asyncio as aioredis
from redis._parsers.hiredis import NOT_ENOUGH_DATA, _AsyncHiredisParser
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline, ClusterPubSub, RedisCluster
from redis.asyncio.connection import Connection
from redis.commands.core import AsyncScript
from redis.connection import HiredisRespSerializer
from redis.crc import key_slot
from redis.exceptions import ConnectionError, NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError


class HiredisPacking(Connection):
    """An asyncio connection whose commands hiredis packs into RESP, as redis-py's sync client does.

    redis-py's asyncio client packs every argument in Python even with hiredis installed (redis/redis-py#4176).
    That was most of a replay's CPU for scripts with many keys and arguments (trending, timelines). The bytes
    sent are the same.
    """

    _serializer = HiredisRespSerializer()

    def pack_command(self, *args: Any) -> list[bytes]:
        return self._serializer.pack(*args)  # type: ignore[no-any-return]

    async def read_response(
        self,
        disable_decoding: bool = False,
        timeout: float | None = None,
        *,
        disconnect_on_error: bool = True,
        push_request: bool | None = False,
    ) -> Any:
        """A reply hiredis already holds is returned without arming the read timeout.

        redis-py arms `socket_timeout` (asyncio.timeout) around every reply it reads, even one already received
        with the rest of a pipeline's: that was most of the cost of reading a pipeline's replies. A reply still on
        its way is read by redis-py, under the timeout, as before.
        """
        parser = self._parser
        if timeout is None and not disable_decoding and isinstance(parser, _AsyncHiredisParser) and parser._connected:
            response = parser._reader.gets()  # type: ignore[attr-defined]  # set while connected
            if response is not NOT_ENOUGH_DATA:
                return await self._buffered(parser, response, disconnect_on_error, bool(push_request))
        return await super().read_response(
            disable_decoding, timeout, disconnect_on_error=disconnect_on_error, push_request=push_request
        )

    async def _buffered(
        self, parser: _AsyncHiredisParser, response: Any, disconnect_on_error: bool, push_request: bool
    ) -> Any:
        """What redis-py's hiredis parser and `read_response` do with a reply, for one taken from the buffer."""
        broken = response[0] if isinstance(response, list) and response else response
        if isinstance(broken, ConnectionError):
            if disconnect_on_error:
                await self.disconnect(nowait=True)
            raise broken
        push = parser._hiredis_PushNotificationType
        if push is not None and isinstance(response, push):
            response = await parser.handle_push_response(response)
            if not push_request:
                return await self.read_response(disconnect_on_error=disconnect_on_error)
        if self.health_check_interval:
            self.next_health_check = asyncio.get_running_loop().time() + self.health_check_interval
        if isinstance(response, ResponseError):
            raise response from None
        return response


if TYPE_CHECKING:
    from chirp.settings import Settings

T = TypeVar("T")


def from_url(url: str, **options: Any) -> aioredis.Redis:
    """`redis.asyncio.Redis.from_url` with `HiredisPacking` connections."""
    return aioredis.Redis.from_url(url, connection_class=HiredisPacking, **options)


class _Queued:
    """What awaiting a command queued on a pipeline gives: the pipeline, untouched."""

    def __init__(self, pipe: ClusterPipeline) -> None:
        self.pipe = pipe

    def __await__(self) -> Generator[Any, None, ClusterPipeline]:
        yield from ()
        return self.pipe


class ScriptingPipeline(ClusterPipeline):
    """redis-py's cluster pipeline, with the commands it refuses that the app pipelines: scripts, PUBLISH and
    SUNIONSTORE (redis-py blocks them in cluster pipelines; each is one slot, or none, here).

    A script goes as EVAL with its text, since a node may not have it loaded and a pipeline cannot load it on
    NOSCRIPT; the node caches it by its SHA all the same. A PUBLISH goes to any node (it reaches every node).
    """

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        """Queue the script at once (as `evalsha_of` expects); `Script.__call__` awaits the result, which must not
        be the pipeline itself: awaiting a cluster pipeline resets it."""
        self.execute_command("EVAL", _SCRIPTS[sha], numkeys, *keys_and_args)
        return _Queued(self)

    def publish(self, channel: Any, message: Any, **kwargs: Any) -> Any:
        return self.execute_command("PUBLISH", channel, message, target_nodes=RedisCluster.RANDOM, **kwargs)

    def sunionstore(self, dest: Any, keys: Any, *args: Any) -> Any:
        return self.execute_command("SUNIONSTORE", dest, *([keys] if isinstance(keys, str | bytes) else keys), *args)


_SCRIPTS: dict[str, Any] = {}  # SHA -> text of every script registered with a `Cluster`


class _DiscoveringPubSub(ClusterPubSub):
    """A subscription of a client that may not have sent a command yet: redis-py picks the subscription's node from
    the slot map, so the client learns the cluster first (a no-op once it has)."""

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        await self.cluster.initialize()
        return await super().execute_command(*args, **kwargs)


class Cluster(RedisCluster):
    """`RedisCluster` whose pipelines take the app's scripts (`ScriptingPipeline`) and whose subscriptions work
    before its first command (`_DiscoveringPubSub`)."""

    def pubsub(self, node: Any = None, host: str | None = None, port: int | None = None, **kwargs: Any) -> Any:
        return _DiscoveringPubSub(self, node=node, host=host, port=port, **kwargs)

    def register_script(self, script: Any) -> Any:
        registered = super().register_script(script)
        _SCRIPTS[registered.sha] = registered.script
        return registered

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> ClusterPipeline:
        if shard_hint:
            return super().pipeline(transaction, shard_hint)  # refused by redis-py, as it says
        return ScriptingPipeline(self, transaction)  # type: ignore[abstract]  # as redis-py builds its own


def connect(settings: Settings, **options: Any) -> aioredis.Redis:
    """The client of `settings`: a `Cluster` when `redis_cluster` is set (plain connections: it picks its own
    class), else `from_url`. Both offer the commands, pipelines, scripts and pub/sub the app uses, so callers hold
    either as `aioredis.Redis`."""
    if settings.redis_cluster:
        return cast(aioredis.Redis, Cluster.from_url(settings.redis_url, **options))
    return from_url(settings.redis_url, **options)


def is_cluster(client: object) -> bool:
    return isinstance(client, RedisCluster)


def slot_chunks(client: object, items: Sequence[T], key: Callable[[T], str], size: int) -> Iterator[list[T]]:
    """`items` in chunks of at most `size`, for scripts that take many keys in one call: in order on one server; on
    a cluster, grouped by the slot of `key(item)`, since a script's keys must all be in one slot."""
    if not is_cluster(client):
        for i in range(0, len(items), size):
            yield list(items[i : i + size])
        return
    by_slot: dict[int, list[T]] = {}
    for item in items:
        by_slot.setdefault(key_slot(key(item).encode()), []).append(item)
    for group in by_slot.values():
        for i in range(0, len(group), size):
            yield group[i : i + size]


async def pipelined(
    redis: aioredis.Redis, queue: Callable[[Pipeline], object], scripts: Iterable[AsyncScript] = ()
) -> list[Any]:
    """The replies to the commands `queue` puts on one pipeline (no transaction): one round trip. A command that
    failed has its exception in its place. Scripts go as `EVALSHA` (`evalsha_of`) alone: redis-py's pipelines ask
    `SCRIPT EXISTS` before every send (a round trip more), so here a missing script (a restarted or flushed Redis)
    is loaded, from `scripts`, and the pipeline sent again."""
    for attempt in range(2):
        async with redis.pipeline(transaction=False) as pipe:
            queue(pipe)
            replies = await pipe.execute(raise_on_error=False)
        if attempt or not any(isinstance(reply, NoScriptError) for reply in replies):
            return replies
        for script in scripts:
            await redis.script_load(script.script)
    raise AssertionError("unreachable")


class RoundTrips:
    """`pipelined` for the hottest read path (the session check and the timeline's window, every request), on a
    connection of its own when the client is one server's.

    A redis-py pipeline spent more CPU around the round trip than on it: a pool lock and condition, a read-ahead
    check of the socket and a timeout task per send, a retry wrapper, observability hooks. Here the pipelines of the
    requests that ask in the same turn of the event loop go out together, packed by hiredis, in one socket write on
    one connection, and their replies come back in order on it: a write and a read (system calls, on this side and
    on Redis's) per turn, not per request. The replies are what redis-py's pipelines give (`parse_response`: same
    reply types, each failed command's error in its place). A pipeline with reply-shaping options, and every
    pipeline on a cluster, goes through the client's own pipelines. A pipeline not answered within the client's
    `socket_timeout` fails with a timeout and closes the connection (every pipeline waiting on it fails with it);
    a failed or closed connection is replaced, and a pipeline that failed with it is sent once more, as the
    clients here retry (`Retry(NoBackoff(), 1)`). A pipeline whose request went away is still read off the
    connection, its replies dropped. Blocking commands do not belong here: they would hold up every request behind
    them.
    """

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._direct = not is_cluster(redis)
        self._link: _Link | None = None
        self._connecting: asyncio.Lock | None = None
        self._callbacks: dict[str, Any] = {}  # command name -> redis-py's reply callback (or None), looked up once

    async def pipelined(self, queue: Callable[[Pipeline], object], scripts: Iterable[AsyncScript] = ()) -> list[Any]:
        """As `pipelined(redis, queue, scripts)`."""
        if not self._direct:
            return await pipelined(self.redis, queue, scripts)
        pipe = self.redis.pipeline(transaction=False)  # only records the commands: never executed
        queue(pipe)
        stack = pipe.command_stack
        if not all(not options or options.keys() == {"keys"} for _, options in stack):  # reply-shaping options
            return await pipelined(self.redis, queue, scripts)
        packed = _packed(stack)
        try:
            replies = await self._round_trip(packed, len(stack))
            if any(isinstance(reply, NoScriptError) for reply in replies):
                for script in scripts:
                    await self.redis.script_load(script.script)
                replies = await self._round_trip(packed, len(stack))
        except _NotDirect:
            return await pipelined(self.redis, queue, scripts)
        return await self._shaped(stack, replies)

    async def _round_trip(self, packed: bytes, count: int) -> list[Any]:
        for attempt in range(2):
            link = self._link
            if link is None or link.closed:
                link = await self._connected()
                if link is None:  # not a connection this can drive (see `_connected`): the client's pipelines
                    raise _NotDirect
            try:
                return await link.send(packed, count)
            except (ConnectionError, RedisTimeoutError, OSError) as exc:
                if attempt:
                    if isinstance(exc, TimeoutError):  # the read deadline (socket_timeout), as redis-py raises it
                        raise RedisTimeoutError("Timeout reading from Redis") from None
                    raise
        raise AssertionError("unreachable")

    async def _shaped(self, stack: list[tuple[Any, Any]], replies: list[Any]) -> list[Any]:
        """Each reply through redis-py's callback for its command (`EXISTS` -> int, `SISMEMBER` -> bool, ...)."""
        shaped: list[Any] = []
        for (args, _), reply in zip(stack, replies, strict=True):
            if not isinstance(reply, ResponseError):
                name = args[0]
                callback = self._callbacks.get(name, _UNKNOWN)
                if callback is _UNKNOWN:
                    callback = self._callbacks[name] = self.redis.response_callbacks.get(name)
                if callback is not None:
                    reply = callback(reply)
                    if inspect.isawaitable(reply):
                        reply = await reply
            shaped.append(reply)
        return shaped

    async def _connected(self) -> _Link | None:
        """The open link, connecting one if there is none (one connect for the requests that find none); None
        when the client's connections are not the plain hiredis ones this drives."""
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            link = self._link
            if link is not None and not link.closed:
                return link
            if link is not None:
                await link.connection.disconnect(nowait=True)
                self._link = None
            pool = self.redis.connection_pool
            connection = cast(Connection, pool.connection_class(**pool.connection_kwargs))
            await connection.connect()  # redis-py's handshake: AUTH, SELECT, HELLO, client name, ...
            parser, writer = connection._parser, connection._writer
            if not isinstance(parser, _AsyncHiredisParser) or writer is None:
                await connection.disconnect(nowait=True)
                self._direct = False
                return None
            self._link = _Link(connection, writer.transport, parser._reader, connection.socket_timeout)
            return self._link

    async def aclose(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            link.close(ConnectionError("Connection closed by the client."))
            await link.connection.disconnect(nowait=True)


class _NotDirect(Exception):
    """The client's connections are not ones `RoundTrips` drives (raised once: `pipelined` falls back)."""


class _Link(asyncio.Protocol):
    """One connection's transport, taken over from redis-py's stream once its handshake is done: what is sent in a
    turn of the loop goes out in one write; replies are read by hiredis as they arrive and handed, in order, to
    the pipeline waiting for them."""

    def __init__(self, connection: Connection, transport: Any, reader: Any, timeout_s: float | None) -> None:
        self.connection, self.transport, self.reader = connection, transport, reader
        self.timeout_s = timeout_s
        self.closed = False
        self._loop = asyncio.get_running_loop()
        self._out: list[bytes] = []  # this turn's pipelines, written together
        # Pipelines sent, oldest first: [replies expected, replies so far, the future to answer, when it was sent].
        self._waiting: collections.deque[list[Any]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None
        transport.set_protocol(self)

    def send(self, packed: bytes, count: int) -> asyncio.Future[list[Any]]:
        if self.closed:
            raise ConnectionError("Connection closed by server.")
        if not self._out:
            self._loop.call_soon(self._flush)
        self._out.append(packed)
        answer: asyncio.Future[list[Any]] = self._loop.create_future()
        self._waiting.append([count, [], answer, self._loop.time()])
        if self._timer is None and self.timeout_s is not None:
            self._timer = self._loop.call_later(self.timeout_s, self._check_time)
        return answer

    def _flush(self) -> None:
        out, self._out = self._out, []
        if not self.closed:
            self.transport.write(b"".join(out))

    def data_received(self, data: bytes) -> None:
        reader, waiting = self.reader, self._waiting
        reader.feed(data)
        try:
            while waiting:
                reply = reader.gets()
                if reply is NOT_ENOUGH_DATA:
                    return
                if not isinstance(reply, _PLAIN_REPLIES) or isinstance(reply, ConnectionError):  # RESP2: no pushes
                    raise reply if isinstance(reply, ConnectionError) else ConnectionError("unexpected reply")
                entry = waiting[0]
                entry[1].append(reply)
                if len(entry[1]) == entry[0]:
                    waiting.popleft()
                    if not entry[2].done():  # a request that went away: its replies are dropped
                        entry[2].set_result(entry[1])
            if reader.gets() is not NOT_ENOUGH_DATA:
                raise ConnectionError("a reply nothing asked for")
        except Exception as exc:  # a protocol error: nothing more on this connection can be trusted
            self.close(exc if isinstance(exc, ConnectionError) else ConnectionError(str(exc)))

    def _check_time(self) -> None:
        self._timer = None
        if not self._waiting or self.closed or self.timeout_s is None:
            return
        due = self._waiting[0][3] + self.timeout_s
        if self._loop.time() >= due:
            self.close(TimeoutError("Timeout reading from Redis"))
        else:
            self._timer = self._loop.call_at(due, self._check_time)

    def connection_lost(self, exc: Exception | None) -> None:
        self.close(ConnectionError("Connection closed by server."))

    def close(self, error: BaseException) -> None:
        """Fail every pipeline waiting with `error` and close the connection."""
        if not self.closed:
            self.closed = True
            self.transport.abort()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiting, self._waiting = self._waiting, collections.deque()
        for _, _, answer, _ in waiting:
            if not answer.done():
                answer.set_exception(error)


_UNKNOWN = object()
_PLAIN_REPLIES = (str, bytes, int, float, list, type(None), ResponseError)


def _packed(stack: list[tuple[Any, Any]]) -> bytes:
    """The commands of a pipeline in RESP, packed by hiredis (as `HiredisPacking.pack_command`, without its per
    argument checks: the read path's arguments are str, bytes and numbers)."""
    packed = []
    for args, _ in stack:
        if isinstance(args[0], str) and " " in args[0]:  # a two-word command (`CLIENT ID`) goes as two arguments
            args = (*args[0].split(), *args[1:])
        packed.append(hiredis.pack_command(args))
    return b"".join(packed)


def evalsha_of(pipe: Pipeline, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]) -> None:
    """Queue `script` on `pipe` by its sha (for `pipelined`, which loads it when missing)."""
    pipe.evalsha(script.sha, len(keys), *keys, *args)
