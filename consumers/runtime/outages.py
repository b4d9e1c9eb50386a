"""Waiting out an outage: an error that is the infrastructure's fault (`chirp.outages.outage_reason`) is retried
until the store or broker answers again; the gauge and the log change once per outage, not per retry."""

from __future__ import annotations

import asyncio
import time

from chirp.logging import get_logger
from consumers.runtime.metrics import OUTAGE

log = get_logger("chirp.consumer")
# How often work is retried during an outage, at most: soon after the store is back, without hammering it meanwhile.
OUTAGE_RETRY_MAX_S = 1.0


class ShuttingDown(Exception):
    """An outage (or an open circuit) outlasted the shutdown: leave the batch uncommitted so it is redelivered."""


class Outages:
    """The outages one consumer is waiting out: reason -> when it began (monotonic), until work succeeds again."""

    def __init__(self, consumer: str, stopping: asyncio.Event, base_delay: float, max_delay: float) -> None:
        self.consumer = consumer
        self.stopping = stopping
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.began: dict[str, float] = {}

    async def wait_out(self, reason: str, exc: BaseException, waited: int) -> None:
        """Wait before trying work that failed for an outage again (`waited`: tries so far)."""
        if reason not in self.began:
            self.began[reason] = time.monotonic()
            OUTAGE.labels(self.consumer, reason).set(1)
            log.warning(
                "outage began: waiting it out, nothing is dead-lettered",
                consumer=self.consumer,
                reason=reason,
                error=f"{type(exc).__name__}: {exc}",
            )
        if self.stopping.is_set():
            raise ShuttingDown from exc
        await asyncio.sleep(min(self.max_delay, OUTAGE_RETRY_MAX_S, self.base_delay * 2**waited))

    def over(self) -> None:
        """Work succeeded: every outage being waited out is over."""
        now = time.monotonic()
        for reason, began in self.began.items():
            OUTAGE.labels(self.consumer, reason).set(0)
            log.info("outage over", consumer=self.consumer, reason=reason, duration_s=round(now - began, 3))
        self.began.clear()
