"""`GET /metrics`: the gateway's Prometheus metrics (requests and latency by route, process CPU and memory)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.openapi import contract


@contract(media_type="text/plain")
async def metrics(request: Request) -> Response:
    """Prometheus text exposition of this gateway process's metrics."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


routes = [Route("/metrics", metrics, methods=["GET"])]
