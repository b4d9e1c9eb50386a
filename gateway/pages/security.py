"""Security headers on every response: a strict CSP (no inline script or style), nosniff, referrer, frame policy.

A response that may hold credentials or a viewer's own data is never stored by a cache (`Cache-Control:
no-store`, unless it sets its own): one to a request that carried credentials (a bearer token or the login
cookies; static files aside), one that sets a cookie, and the token endpoints under `/auth/`.
"""

from __future__ import annotations

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


def carries_credentials(scope: Scope) -> bool:
    if scope["path"].startswith("/static/"):  # the same files for everyone: the browser's cookies do not matter
        return False
    for name, value in scope["headers"]:
        if name == b"authorization" or (name == b"cookie" and any(c in value for c in _LOGIN_COOKIES)):
            return True
    return scope["path"].startswith("/auth/")


def add_security_headers(headers: list[tuple[bytes, bytes]]) -> None:
    """Add each security header a response does not set itself."""
    present = {name.lower() for name, _ in headers}
    headers.extend(pair for pair in _RAW if pair[0] not in present)
