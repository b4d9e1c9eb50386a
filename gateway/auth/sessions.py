"""Refresh-token sessions in Redis, with rotation on every use and reuse detection.

`chirp:session:{sid}` is a hash (user_id, token_hash, created_at, rotated_at) that lives `ttl_days` from login;
its existence is what `is_active` checks, so deleting it revokes the session and every access token naming its `sid`.
`chirp:refresh:{sha256(token)}` maps every refresh token ever issued for a live session to its `sid` (same expiry as
the session), which is how a replayed old token is recognised: it still finds the session, but no longer matches
the session's current hash, so the whole session is revoked. Only hashes are stored.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

from redis.asyncio import Redis

PREFIX = "chirp"

# KEYS: session hash.  ARGV: presented hash, new hash, now.  Returns {'ok', user id, the session's TTL in ms}: the
# caller then stores the new token's refresh key (another key, so another slot on a Redis Cluster) before handing
# the token out.
_ROTATE = """
local stored = redis.call('HGET', KEYS[1], 'token_hash')
if not stored then return {'revoked'} end
if stored ~= ARGV[1] then
  redis.call('DEL', KEYS[1])
  return {'reused'}
end
redis.call('HSET', KEYS[1], 'token_hash', ARGV[2], 'rotated_at', ARGV[3])
return {'ok', redis.call('HGET', KEYS[1], 'user_id'), redis.call('PTTL', KEYS[1])}
"""


class SessionError(Exception):
    """A refresh token was refused: `reason` is `unknown`, `revoked` or `reused` (the session is now revoked)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class SessionStore:
    """Create, rotate, revoke and check refresh-token sessions."""

    def __init__(self, redis: Redis, ttl_days: float, *, prefix: str = PREFIX) -> None:
        self._redis = redis
        self._ttl_ms = int(ttl_days * 86_400_000)
        self._prefix = prefix
        self._rotate = redis.register_script(_ROTATE)

    def session_key(self, session_id: str) -> str:
        return f"{self._prefix}:session:{session_id}"

    def user_sessions_key(self, user_id: str) -> str:
        return f"{self._prefix}:user-sessions:{user_id}"

    def _refresh_key(self, token_hash: str) -> str:
        return f"{self._prefix}:refresh:{token_hash}"

    async def create(self, user_id: str) -> tuple[str, str]:
        """Start a session for `user_id`; returns (session_id, refresh_token)."""
        session_id = secrets.token_urlsafe(16)
        token = secrets.token_urlsafe(32)
        token_hash = _hash(token)
        now = str(int(time.time()))
        key = self.session_key(session_id)
        # Listed first, so `revoke_user` finds every login that works; the keys are in different slots on a Redis
        # Cluster, so no transaction: a failure half way leaves a session that cannot be used, never one not listed.
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.sadd(self.user_sessions_key(user_id), session_id)
            pipe.pexpire(self.user_sessions_key(user_id), self._ttl_ms)
            await pipe.execute()
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(key, mapping={"user_id": user_id, "token_hash": token_hash, "created_at": now})
            pipe.pexpire(key, self._ttl_ms)
            pipe.set(self._refresh_key(token_hash), session_id, px=self._ttl_ms)
            await pipe.execute()
        return session_id, token

    async def rotate(self, refresh_token: str) -> tuple[str, str, str]:
        """Trade a refresh token for a new one; returns (session_id, user_id, new_refresh_token)."""
        token_hash = _hash(refresh_token)
        # The refresh key never changes once written, so reading it outside the script is race-free.
        raw_sid = await self._redis.get(self._refresh_key(token_hash))
        if raw_sid is None:
            raise SessionError("unknown")
        session_id = _text(raw_sid)
        new_token = secrets.token_urlsafe(32)
        new_hash = _hash(new_token)
        result = await self._rotate(keys=[self.session_key(session_id)], args=[token_hash, new_hash, int(time.time())])
        outcome = _text(result[0])
        if outcome != "ok":
            raise SessionError(outcome)
        ttl_ms = int(result[2])
        await self._redis.set(self._refresh_key(new_hash), session_id, px=ttl_ms if ttl_ms > 0 else None)
        return session_id, _text(result[1]), new_token

    async def revoke(self, session_id: str) -> None:
        """End a session: its refresh tokens stop working and `is_active` turns false."""
        await self._redis.delete(self.session_key(session_id))

    async def revoke_user(self, user_id: str, *also: str) -> None:
        """End every session of `user_id` (and the sessions `also` names): a deleted account logs out everywhere."""
        sessions = {_text(s) for s in await self._redis.smembers(self.user_sessions_key(user_id))} | set(also)
        await self._redis.delete(self.user_sessions_key(user_id), *(self.session_key(s) for s in sessions))

    async def is_active(self, session_id: str) -> bool:
        """Whether the session named by an access token's `sid` is still live."""
        return bool(await self._redis.exists(self.session_key(session_id)))
