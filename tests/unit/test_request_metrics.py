"""`gateway.metrics.observe` adds to prometheus_client's values directly: `/metrics` must read what `inc` and
`observe` would have given (the count, the sum and the one bucket of each observation)."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from gateway.metrics import observe


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize("seconds", [0.0005, 0.001, 0.003, 0.1, 7.0, 60.0])
def test_an_observation_lands_where_prometheus_would_put_it(seconds: float) -> None:
    route = f"/test/metrics/{seconds}"
    labels = {"method": "GET", "route": route}
    bounds = ["0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0"]
    for _ in range(2):  # the second observation goes through the series looked up by the first
        observe("GET", route, 200, seconds)
    assert _sample("chirp_http_requests_total", status="200", **labels) == 2
    assert _sample("chirp_http_request_seconds_count", **labels) == 2
    assert _sample("chirp_http_request_seconds_sum", **labels) == pytest.approx(2 * seconds)
    for bound in [*bounds, "+Inf"]:
        expected = 2 if seconds <= float(bound) else 0  # cumulative buckets: every bound at or above it
        assert _sample("chirp_http_request_seconds_bucket", le=bound, **labels) == expected, bound
