"""Short-lived EdDSA access tokens (RFC 9068 shape): issue with the current key, verify against the key ring.

Verification trusts nothing in the header beyond picking a key we already hold: the algorithm is pinned to EdDSA,
`kid` must name a live key of ours, `jwk`/`jku`/`x5u` are never consulted, and `crit` is refused. Every failure
becomes one `TokenError` carrying a short reason code the gateway can put in its 401.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Final

import jwt

from gateway.auth.keys import LEEWAY_S, KeyRing

ALGORITHM: Final = "EdDSA"
TOKEN_TYPE: Final = "at+jwt"
MAX_TTL_S: Final = 900
REQUIRED_CLAIMS: Final = ("iss", "aud", "sub", "iat", "nbf", "exp", "jti", "sid")

REASONS: Final = {
    "expired": "The access token has expired.",
    "not_yet_valid": "The access token is not valid yet.",
    "bad_issuer": "The access token was issued by someone else.",
    "bad_audience": "The access token is meant for someone else.",
    "missing_claim": "The access token lacks a required claim.",
    "bad_signature": "The access token signature does not verify.",
    "unknown_kid": "The access token was signed with a key we do not know.",
    "malformed": "The access token is malformed.",
    "bad_algorithm": "The access token uses an algorithm we do not accept.",
    "revoked": "The session behind this access token has ended.",
}


class TokenError(jwt.InvalidTokenError):
    """An access token was refused; `reason` is one of `REASONS`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    @property
    def message(self) -> str:
        """A sentence for the error body."""
        return REASONS[self.reason]


@dataclass(frozen=True)
class Claims:
    sub: str
    sid: str
    jti: str
    iss: str
    aud: str
    iat: int
    exp: int


def www_authenticate(reason: str) -> str:
    """The RFC 6750 `WWW-Authenticate` value for a refused token."""
    return f'Bearer error="invalid_token", error_description="{reason}"'


def sign_claims(keyring: KeyRing, claims: dict[str, Any]) -> str:
    """Sign an arbitrary claim set with the current key; callers should prefer `issue_access_token`."""
    headers = {"kid": keyring.current.kid, "typ": TOKEN_TYPE}
    return jwt.encode(claims, keyring.private_key, algorithm=ALGORITHM, headers=headers)


def issue_access_token(
    keyring: KeyRing, *, sub: str, session_id: str, issuer: str, audience: str, ttl_seconds: int = MAX_TTL_S
) -> str:
    """A signed access token for user `sub` in session `session_id`, valid for `ttl_seconds` (at most 900)."""
    if not 0 < ttl_seconds <= MAX_TTL_S:
        raise ValueError(f"ttl_seconds must be in 1..{MAX_TTL_S}")
    now = int(time.time())
    claims = {
        "iss": issuer,
        "aud": audience,
        "sub": sub,
        "iat": now,
        "nbf": now,
        "exp": now + ttl_seconds,
        "jti": uuid.uuid4().hex,
        "sid": session_id,
    }
    return sign_claims(keyring, claims)


def verify_access_token(
    keyring: KeyRing, token: str, *, issuer: str, audience: str, leeway_s: float = LEEWAY_S
) -> Claims:
    """The claims of a token we issued and that is valid now; `TokenError` otherwise."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise TokenError("malformed") from None
    if header.get("alg") != ALGORITHM:
        raise TokenError("bad_algorithm")
    kid = header.get("kid")
    public_key = keyring.public_key(kid) if isinstance(kid, str) else None
    if public_key is None:
        raise TokenError("unknown_kid")
    if header.get("typ") != TOKEN_TYPE or "crit" in header:
        raise TokenError("malformed")
    try:
        payload = jwt.decode(
            token,
            public_key,
            algorithms=[ALGORITHM],
            issuer=issuer,
            audience=audience,
            leeway=leeway_s,
            options={"require": list(REQUIRED_CLAIMS), "strict_aud": True},
        )
    except jwt.PyJWTError as exc:
        raise TokenError(_reason(exc)) from None
    return _claims(payload)


class VerifiedTokens:
    """Tokens whose signature and claims already verified, kept until they expire: one EdDSA check per token.

    A hit still checks what can change since: the clock (`exp` with the leeway) and the key ring (a key dropped
    from it stops its tokens). Session revocation is checked by the caller on every request, cached or not.
    Bounded: past `size` entries the oldest goes.
    """

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._seen: dict[str, tuple[Claims, str]] = {}

    def verify(self, keyring: KeyRing, token: str, *, issuer: str, audience: str, leeway_s: float = LEEWAY_S) -> Claims:
        """As `verify_access_token`."""
        hit = self._seen.get(token)
        if hit is not None:
            claims, kid = hit
            fresh = time.time() <= claims.exp + leeway_s and (claims.iss, claims.aud) == (issuer, audience)
            if fresh and keyring.public_key(kid) is not None:
                return claims
            del self._seen[token]
        claims = verify_access_token(keyring, token, issuer=issuer, audience=audience, leeway_s=leeway_s)
        if len(self._seen) >= self.size:
            del self._seen[next(iter(self._seen))]
        self._seen[token] = (claims, jwt.get_unverified_header(token)["kid"])
        return claims


def _reason(exc: jwt.PyJWTError) -> str:
    # Order matters: InvalidSignatureError is a DecodeError, so it is matched first.
    for exc_type, reason in (
        (jwt.InvalidSignatureError, "bad_signature"),
        (jwt.ExpiredSignatureError, "expired"),
        (jwt.ImmatureSignatureError, "not_yet_valid"),
        (jwt.InvalidIssuerError, "bad_issuer"),
        (jwt.InvalidAudienceError, "bad_audience"),
        (jwt.MissingRequiredClaimError, "missing_claim"),
        (jwt.InvalidAlgorithmError, "bad_algorithm"),
    ):
        if isinstance(exc, exc_type):
            return reason
    return "malformed"  # DecodeError, InvalidIssuedAtError, InvalidSubjectError, InvalidJTIError, ...


def _claims(payload: dict[str, Any]) -> Claims:
    if not isinstance(payload["sid"], str) or not all(
        isinstance(payload[name], int) and not isinstance(payload[name], bool) for name in ("iat", "exp")
    ):
        raise TokenError("malformed")
    return Claims(
        sub=payload["sub"],
        sid=payload["sid"],
        jti=payload["jti"],
        iss=payload["iss"],
        aud=payload["aud"],
        iat=payload["iat"],
        exp=payload["exp"],
    )
