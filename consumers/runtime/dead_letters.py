"""Dead letters: the original record, key and headers kept, plus `dlq_*` headers saying who gave up on it and why
(`chirp dlq` reads them; `chirp dlq retry` sends it back through the consumer's retry topic)."""

from __future__ import annotations

from datetime import UTC, datetime

from aiokafka import ConsumerRecord

from chirp.outages import outage_reason
from consumers.runtime.outages import Outages
from producers.broker import Publisher


def dead_letter_headers(
    record: ConsumerRecord, consumer: str, reason: str, detail: str, attempts: int
) -> dict[str, str]:
    """The record's own headers and the `dlq_*` ones naming the consumer, the error, the attempts and the origin."""
    headers = {k: v.decode(errors="replace") for k, v in record.headers or ()}
    headers.update(
        {
            "dlq_consumer": consumer,
            "dlq_reason": reason,
            "dlq_error": detail[:1000],
            "dlq_attempts": str(attempts),
            "dlq_topic": record.topic,
            "dlq_partition": str(record.partition),
            "dlq_offset": str(record.offset),
            "dlq_at": datetime.now(UTC).isoformat(),
        }
    )
    return headers


async def publish_dead_letter(
    publisher: Publisher, topic: str, record: ConsumerRecord, headers: dict[str, str], outages: Outages
) -> None:
    """Publish to the dead-letter topic, waiting out a Kafka outage until Kafka takes it."""
    waited = 0
    while True:
        try:
            await publisher.publish_raw(topic, record.key, record.value, headers)
            break
        except Exception as exc:
            if (outage := outage_reason(exc)) is None:
                raise
            await outages.wait_out(outage, exc, waited)
            waited += 1
    if waited:
        outages.over()  # Kafka took it: the outage this publish waited out is over
