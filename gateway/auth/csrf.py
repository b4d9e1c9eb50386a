"""CSRF checks for cookie-authenticated requests: a double-submit token and an Origin/Referer match.

Pure functions; the middleware decides which requests need them (unsafe methods carrying the session cookie).
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


def new_csrf_token() -> str:
    """A fresh random token for the CSRF cookie and the form field or header that echoes it."""
    return secrets.token_urlsafe(32)


def csrf_ok(request_token: str | None, cookie_token: str | None) -> bool:
    """Whether the submitted token equals the cookie's, compared in constant time; empty never matches."""
    if not request_token or not cookie_token:
        return False
    return hmac.compare_digest(request_token.encode(), cookie_token.encode())


def _origin(url: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:  # a port that is not a number or out of range
        return None
    if not parts.hostname or port is None:
        return None
    return scheme, parts.hostname.lower(), port


def origin_ok(origin_or_referer: str | None, public_url: str) -> bool:
    """Absent header: fine (non-browser clients); present: scheme, host and port must equal `public_url`'s."""
    if origin_or_referer is None or origin_or_referer == "":
        return True
    # `Origin: null` (sandboxed frames, some redirects) has no host, so it fails like any mismatch.
    theirs = _origin(origin_or_referer)
    return theirs is not None and theirs == _origin(public_url)
