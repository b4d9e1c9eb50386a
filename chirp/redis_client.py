"""Redis clients of every process: redis-py's asyncio client, with commands packed and replies read faster."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis._parsers.hiredis import NOT_ENOUGH_DATA, _AsyncHiredisParser
from redis.asyncio.client import Pipeline
from redis.asyncio.connection import Connection
from redis.commands.core import AsyncScript
from redis.connection import HiredisRespSerializer
from redis.exceptions import ConnectionError, NoScriptError, ResponseError


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


def from_url(url: str, **options: Any) -> aioredis.Redis:
    """`redis.asyncio.Redis.from_url` with `HiredisPacking` connections."""
    return aioredis.Redis.from_url(url, connection_class=HiredisPacking, **options)


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


def evalsha_of(pipe: Pipeline, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]) -> None:
    """Queue `script` on `pipe` by its sha (for `pipelined`, which loads it when missing)."""
    pipe.evalsha(script.sha, len(keys), *keys, *args)
