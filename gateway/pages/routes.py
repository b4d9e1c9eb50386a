"""Every page route, and the static files (`/static/app.css`, `/static/app.js`)."""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from gateway.pages import (
    actions,
    explore,
    feeds,
    interactions,
    live,
    notifications,
    people,
    relations,
    safety,
    session,
)
from gateway.pages.templating import STATIC_PACKAGE

routes: list[BaseRoute] = [
    *feeds.routes,
    *actions.routes,
    *interactions.routes,
    *explore.routes,
    *session.routes,
    *live.routes,
    *notifications.routes,
    *people.routes,
    *relations.routes,
    *safety.routes,
    Mount("/static", StaticFiles(packages=[STATIC_PACKAGE]), name="static"),
]
