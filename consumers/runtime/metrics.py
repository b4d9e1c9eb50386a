"""The consumers' Prometheus metrics (served on /metrics by `chirp consume`)."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

PROCESSED = Counter("chirp_events_processed", "Events handled", ["consumer", "topic"])
FAILED = Counter("chirp_events_failed", "Handler attempts that raised", ["consumer", "topic"])
DEAD_LETTERED = Counter("chirp_events_dead_lettered", "Events sent to the dead-letter topic", ["consumer", "topic"])
LATENCY = Histogram("chirp_handler_seconds", "Handler latency per batch", ["consumer", "topic"])
LAG = Gauge("chirp_consumer_lag", "End offset minus position", ["consumer", "topic", "partition"])
CIRCUIT_OPEN = Gauge("chirp_consumer_circuit_open", "1 while failing events are held, not dead-lettered", ["consumer"])
ERASED = Counter(
    "chirp_consumer_erased", "Events skipped because a key they belong to was erased", ["consumer", "topic"]
)
OUTAGE = Gauge("chirp_consumer_outage", "1 while waiting out a store or broker outage", ["consumer", "reason"])


async def update_lag(consumer_name: str, kafka_consumer: Any) -> None:
    """Set the lag gauge of every partition assigned to this consumer (end offset minus position)."""
    for tp in kafka_consumer.assignment():
        end = kafka_consumer.highwater(tp)
        if end is not None:
            position = await kafka_consumer.position(tp)
            LAG.labels(consumer_name, tp.topic, tp.partition).set(max(0, end - position))
