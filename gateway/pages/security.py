"""Security headers on every response: a strict CSP (no inline script or style), nosniff, referrer, frame policy.

A response that may hold credentials or a viewer's own data is never stored by a cache (`Cache-Control:
no-store`, unless it sets its own): one to a request that carried credentials (a bearer token or the login
cookies; static files aside), one that sets a cookie, and the token endpoints under `/auth/`.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import Scope

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
HEADERS: dict[str, str] = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "X-Frame-Options": "DENY",
}
_RAW = [(name.lower().encode(), value.encode()) for name, value in HEADERS.items()]
NO_STORE = (b"cache-control", b"no-store")
_LOGIN_COOKIES = (b"chirp_access=", b"chirp_refresh=")
_DECIDING = frozenset({b"cache-control", b"set-cookie", *(name for name, _ in _RAW)})  # headers that change ours


def carries_credentials(scope: Scope) -> bool:
    if scope["path"].startswith("/static/"):  # the same files for everyone: the browser's cookies do not matter
        return False
    for name, value in scope["headers"]:
        if name == b"authorization" or (name == b"cookie" and any(c in value for c in _LOGIN_COOKIES)):
            return True
    return scope["path"].startswith("/auth/")


def response_headers(
    headers: Iterable[tuple[bytes, bytes]], private: bool, *extra: tuple[bytes, bytes]
) -> list[tuple[bytes, bytes]]:
    """A response's headers, plus `Cache-Control: no-store` when it is `private` or sets a cookie (unless it sets
    its own), each security header it does not set itself, and `extra`."""
    found = list(headers)
    names = {name.lower() for name, _ in found}
    if names.isdisjoint(_DECIDING):  # most responses (every request pays this): all of ours, as they are
        if private:
            found.append(NO_STORE)
        found += _RAW
    else:
        if (private or b"set-cookie" in names) and b"cache-control" not in names:
            found.append(NO_STORE)
        found.extend(pair for pair in _RAW if pair[0] not in names)
    found.extend(extra)
    return found
