"""`/metrics` on the gateway: requests and latency by route template, through `MetricsMiddleware`."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from chirp.settings import Settings
from gateway.metrics import MetricsMiddleware
from gateway.middleware import PerRequest


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


async def scrape(http: httpx.AsyncClient) -> str:
    response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


async def test_requests_are_counted_and_timed_by_route_template(app: Starlette, settings: Settings) -> None:
    built_in = any(m.cls is PerRequest for m in app.user_middleware)  # once create_app adds it
    transport = httpx.ASGITransport(app=app if built_in else MetricsMiddleware(app))
    async with httpx.AsyncClient(transport=transport, base_url=settings.public_url) as http:
        before = await scrape(http)
        for _ in range(3):
            assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/api/users/nobody-here-at-all")).status_code == 404
        assert (await http.get("/no/such/page")).status_code == 404
        after = await scrape(http)

    def delta(name: str, **labels: str) -> float:
        key = tuple(sorted(labels.items()))
        return samples(after, name).get(key, 0.0) - samples(before, name).get(key, 0.0)

    assert delta("chirp_http_requests_total", method="GET", route="/healthz", status="200") == 3
    assert delta("chirp_http_requests_total", method="GET", route="/api/users/{handle}", status="404") == 1
    assert delta("chirp_http_requests_total", method="GET", route="unmatched", status="404") == 1
    assert delta("chirp_http_request_seconds_count", method="GET", route="/healthz") == 3
    assert delta("chirp_http_request_seconds_bucket", method="GET", route="/healthz", le="+Inf") == 3
    assert not [k for k in samples(after, "chirp_http_requests_total") if ("route", "/no/such/page") in k]
