"""Jinja2 for the pages: one environment (autoescape on), time filters, static URLs with a content hash."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

import jinja2
import markupsafe
from starlette.requests import Request
from starlette.responses import HTMLResponse

from domain.markdown import render_post
from gateway.auth.current import CSRF_COOKIE
from gateway.state import state_of

STATIC_PACKAGE = ("gateway", "static")


def as_datetime(value: datetime | str | None) -> datetime | None:
    """A timezone-aware datetime from a datetime or an ISO 8601 string (what the JSON API returns)."""
    if value is None or value == "":
        return None
    when = value if isinstance(value, datetime) else datetime.fromisoformat(value.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def reltime(value: datetime | str | None, now: datetime | None = None) -> str:
    """Short relative time as timelines show it: `now`, `5m`, `3h`, `2d`, then the date (`Mar 3`, `Mar 3, 2024`)."""
    when = as_datetime(value)
    if when is None:
        return ""
    now = now or datetime.now(UTC)
    seconds = (now - when).total_seconds()
    if seconds < 45:
        return "now"
    if seconds < 3600:
        return f"{max(1, round(seconds / 60))}m"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h"
    if seconds < 7 * 86400:
        return f"{int(seconds // 86400)}d"
    if when.year == now.year:
        return f"{when:%b} {when.day}"
    return f"{when:%b} {when.day}, {when.year}"


def exact_time(value: datetime | str | None) -> str:
    """The exact time in UTC, for the `title` of a `<time>` (scripts replace it with the reader's local time)."""
    when = as_datetime(value)
    return f"{when.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC" if when else ""


def iso_time(value: datetime | str | None) -> str:
    """The machine-readable `datetime` attribute of a `<time>`."""
    when = as_datetime(value)
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z") if when else ""


def month_year(value: datetime | str | None) -> str:
    when = as_datetime(value)
    return f"{when:%B %Y}" if when else ""


@cache
def static_url(name: str) -> str:
    """`/static/<name>?v=<hash of its content>`: long-cacheable, and a new deploy is fetched at once."""
    data = resources.files(STATIC_PACKAGE[0]).joinpath(STATIC_PACKAGE[1], name).read_bytes()
    return f"/static/{name}?v={hashlib.sha256(data).hexdigest()[:10]}"


def og_image_url() -> str:
    """The Open Graph image: the PNG previewers accept once built (ops/og_image.py), else its SVG."""
    built = resources.files(STATIC_PACKAGE[0]).joinpath(STATIC_PACKAGE[1], "og-image.png")
    return static_url("og-image.png" if built.is_file() else "og-image.svg")


def initial(name: str) -> str:
    """The letter an avatar placeholder shows."""
    stripped = name.strip().lstrip("@")
    return stripped[:1].upper() or "?"


def hue(name: str) -> int:
    """One of 8 placeholder colours, stable per name (a class, since the CSP forbids style attributes)."""
    return hashlib.sha256(name.encode()).digest()[0] % 8


ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("gateway", "templates"),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
    undefined=jinja2.StrictUndefined,
)
ENV.filters.update(reltime=reltime, exact_time=exact_time, iso_time=iso_time, month_year=month_year, initial=initial)
ENV.filters["hue"] = hue


def bio_html(bio: str | None) -> markupsafe.Markup:
    """A bio as a post renders: links, @mentions and #tags, sanitised by the same renderer."""
    return markupsafe.Markup(render_post(bio).html) if bio else markupsafe.Markup("")


ENV.filters["bio_html"] = bio_html
ENV.globals.update(static_url=static_url, og_image_url=og_image_url)


def render_text(name: str, context: dict[str, Any]) -> str:
    return ENV.get_template(name).render(context)


def render(
    name: str, context: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> HTMLResponse:
    """A template rendered as an HTML response (never cached: pages show the viewer's state)."""
    all_headers = {"Cache-Control": "no-store", **(headers or {})}
    return HTMLResponse(render_text(name, context), status, headers=all_headers)


def base_context(request: Request, viewer: Any, **extra: Any) -> dict[str, Any]:
    """What every layout needs: viewer, CSRF token for forms, current path, dev mode, live-update position, and
    the public URL that absolute links (link previews) start with."""
    state = state_of(request)
    return {
        "viewer": viewer,
        "csrf_token": request.cookies.get(CSRF_COOKIE, ""),
        "path": request.url.path,
        "dev": state.settings.dev,
        "live_since": state.live_relay.position,
        "unread": request.scope.get("chirp_unread", 0),
        "public_url": state.settings.public_url.rstrip("/"),
        **extra,
    }
