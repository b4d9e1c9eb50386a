"""structlog configured once per process: console on a TTY, one JSON object per line otherwise.

Everything that logs goes through the same processors: structlog's own loggers and, through
`ProcessorFormatter`, the stdlib loggers of uvicorn, asyncpg, aiokafka, faststream and asyncio, exceptions
included (a traceback is a `exception` list inside the line, never lines of its own). Python warnings and
uncaught exceptions are logged the same way. A failure repeated identically (same logger, event and error) is
written at most once per window; the next line after the window says how many were `suppressed`.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from types import TracebackType
from typing import Any

import orjson
import structlog
from structlog.contextvars import bind_contextvars, get_contextvars
from structlog.typing import EventDict, WrappedLogger

__all__ = ["RepeatLimiter", "bind_contextvars", "configure", "correlation_id", "get_logger"]


def configure(level: str = "INFO", *, process: str | None = None, repeat_window_s: float = 10.0) -> None:
    """Set up structlog and route stdlib logging (aiokafka, uvicorn, asyncpg) through the same renderer."""
    limiter = RepeatLimiter(repeat_window_s)
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if process:
        shared.insert(0, _static(process=process))
    renderer: structlog.types.Processor
    tracebacks: structlog.types.Processor
    if sys.stderr.isatty():
        renderer, tracebacks = structlog.dev.ConsoleRenderer(), _passthrough
    else:
        renderer, tracebacks = (
            structlog.processors.JSONRenderer(serializer=_dumps),
            structlog.processors.dict_tracebacks,
        )
    structlog.configure(
        processors=[*shared, limiter.processor, tracebacks, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(limiter.filter)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name, structlog.stdlib.ExtraAdder(["suppressed"])],
            processors=[_drop_meta, tracebacks, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    for name in ("chirp", "faststream", "uvicorn.error"):
        logging.getLogger(name).setLevel(level)
    # FastStream gives its logger a plain-text handler of its own when imported: its lines go through ours instead.
    faststream_logger = logging.getLogger("faststream")
    faststream_logger.handlers.clear()
    faststream_logger.propagate = True
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = lambda args: _log_uncaught(args.exc_type, args.exc_value, args.exc_traceback)


class RepeatLimiter:
    """Lets the first of identical failures through, then at most one per `window_s`, counting the others.

    Only lines at warning or above are limited, identified by their error (an exception or an `error` field;
    for stdlib loggers, else their text): those are what an outage repeats for every request or retry. The same
    failure seen by two consumers of one process is not a repeat: each says so (e.g. its "outage began").
    """

    MAX_KEYS = 1000

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._seen: dict[tuple[str, ...], tuple[float, int]] = {}  # key -> (last written, suppressed since)
        self._lock = threading.Lock()

    def admit(self, key: tuple[str, ...]) -> int | None:
        """None to drop this line; else the number suppressed since the last one written (0: none)."""
        if self.window_s <= 0:
            return 0
        now = time.monotonic()
        with self._lock:
            last = self._seen.get(key)
            if last is not None and now - last[0] < self.window_s:
                self._seen[key] = (last[0], last[1] + 1)
                return None
            if len(self._seen) >= self.MAX_KEYS:
                self._seen.clear()
            self._seen[key] = (now, 0)
            return last[1] if last else 0

    def processor(self, _: WrappedLogger, method: str, event: EventDict) -> EventDict:
        if logging.getLevelName(method.upper()) in (logging.DEBUG, logging.INFO):
            return event
        error = _error_text(event.get("exc_info"), event.get("error"))
        if error is None:
            return event
        suppressed = self.admit(("structlog", str(event.get("event")), str(event.get("consumer", "")), error))
        if suppressed is None:
            raise structlog.DropEvent
        if suppressed:
            event["suppressed"] = suppressed
        return event

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        # A library's warning repeats its text (aiokafka: "Unable connect to node ...", ten times a second).
        error = _error_text(record.exc_info, getattr(record, "error", None)) or record.getMessage()[:200]
        suppressed = self.admit((record.name, str(record.msg), error))
        if suppressed:
            record.suppressed = suppressed
        return suppressed is not None


def _error_text(exc_info: Any, error: Any) -> str | None:
    """What identifies a failure: the exception's type and message, or the `error` field."""
    if exc_info is True:
        exc_info = sys.exc_info()
    exc = exc_info[1] if isinstance(exc_info, tuple) else exc_info
    if isinstance(exc, BaseException):
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    return None if error is None else str(error)[:200]


def _log_uncaught(kind: type[BaseException], exc: BaseException | None, tb: TracebackType | None) -> None:
    structlog.get_logger("chirp").critical("uncaught exception", exc_info=(kind, exc, tb))


def _dumps(obj: Any, **_: Any) -> str:
    return orjson.dumps(obj, default=repr).decode()


def _passthrough(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    return event


def _static(**fields: str) -> structlog.types.Processor:
    def add(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
        event.update(fields)
        return event

    return add


def _drop_meta(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    event.pop("_record", None)
    event.pop("_from_structlog", None)
    return event


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)


def correlation_id() -> str:
    """The correlation id bound to the current task (HTTP request or event), or ''."""
    return str(get_contextvars().get("correlation_id", ""))
