"""What every consumer gets for free: batches, ordered retries, dead letters, commits, logging and metrics.

A consumer module declares a `Consumer` and its handlers (declaration.py); this runtime subscribes it to Kafka
through FastStream (wiring.py: one consumer group per consumer, manual acks) and, for every batch it polls:

1. decodes each record into its event model (decoding.py); an undecodable record, an unknown type or an unknown
   version goes to the consumer's dead-letter topic at once (dead_letters.py);
2. calls the handlers (policy.py): a batch handler gets every event of its topic in the batch (one transaction,
   one pipeline); a per-event handler is called in offset order per partition, partitions concurrently. When a
   batch handler fails, its events are retried one at a time, so one poison event cannot hold back the others;
3. retries a failing event with exponential backoff up to `consumer_max_attempts`, then dead-letters it with
   headers naming the consumer, the error, the attempts and the original topic/partition/offset. An outage is not
   the event's fault (outages.py): an error that `chirp.outages.outage_reason` names (Kafka, PostgreSQL or Redis
   unreachable, full, out of memory, read-only, starting or shutting down; a serialization failure or deadlock)
   is retried, the whole batch at once for a batch handler, until the store answers again; the partition holds,
   nothing is dead-lettered, `chirp_consumer_outage{consumer,reason}` is 1 and the log says "outage began" and
   "outage over" once each. Only an event that fails with another error is the event's fault. Neither is a bug
   that fails every event: after `consumer_breaker_after` events in a row dead-lettered for handler errors the
   circuit opens, and the next failing event is held (tried every `consumer_breaker_retry_ms`, its partition
   waiting behind it, `chirp_consumer_circuit_open` at 1) until it succeeds, e.g. after the fix;
4. commits only after every event of the batch was handled or dead-lettered (committer.py), so the committed
   offset never passes an unhandled event; commits are gathered for `consumer_commit_interval_ms`, so a crash
   redelivers the events handled since the last one, and handlers are idempotent.

Batches are taken by `poll` (polling.py), live and in a replay alike: wait for the first records, take what the
fetcher holds, never sleep after an empty poll.

On SIGTERM/SIGINT FastStream stops polling and waits for the batch in flight, which then commits. Metrics are in
metrics.py. Consumer files import what they use from here (`from consumers.runtime import Consumer, Context`).
"""

from consumers.runtime.committer import Committer
from consumers.runtime.context import Context, close_context, open_context
from consumers.runtime.declaration import (
    BeforeSwap,
    Consumer,
    Handler,
    PermanentError,
    ReadModel,
    Setup,
    all_consumers,
    load,
)
from consumers.runtime.decoding import (
    Decoded,
    Erased,
    Item,
    Keys,
    Rejected,
    decode,
    decode_batch,
    load_keys,
    newest_events,
    retried_record,
)
from consumers.runtime.metrics import (
    CIRCUIT_OPEN,
    DEAD_LETTERED,
    FAILED,
    LAG,
    LATENCY,
    OUTAGE,
    PROCESSED,
)
from consumers.runtime.outages import OUTAGE_RETRY_MAX_S, Outages, ShuttingDown
from consumers.runtime.policy import Runner
from consumers.runtime.polling import poll
from consumers.runtime.wiring import build_app, subscribe

__all__ = [
    "CIRCUIT_OPEN",
    "DEAD_LETTERED",
    "FAILED",
    "LAG",
    "LATENCY",
    "OUTAGE",
    "OUTAGE_RETRY_MAX_S",
    "PROCESSED",
    "BeforeSwap",
    "Committer",
    "Consumer",
    "Context",
    "Decoded",
    "Erased",
    "Handler",
    "Item",
    "Keys",
    "Outages",
    "PermanentError",
    "ReadModel",
    "Rejected",
    "Runner",
    "Setup",
    "ShuttingDown",
    "all_consumers",
    "build_app",
    "close_context",
    "decode",
    "decode_batch",
    "load",
    "load_keys",
    "newest_events",
    "open_context",
    "poll",
    "retried_record",
    "subscribe",
]
