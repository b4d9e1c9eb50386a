"""structlog configured once per process: console on a TTY, JSON otherwise."""

from __future__ import annotations

import logging
import sys

import orjson
import structlog
from structlog.contextvars import bind_contextvars, get_contextvars
from structlog.typing import EventDict, WrappedLogger

__all__ = ["bind_contextvars", "configure", "correlation_id", "get_logger"]


def configure(level: str = "INFO", *, process: str | None = None) -> None:
    """Set up structlog and route stdlib logging (aiokafka, uvicorn) through the same renderer."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if process:
        shared.insert(0, _static(process=process))
    renderer: structlog.types.Processor
    if sys.stderr.isatty():
        renderer = structlog.dev.ConsoleRenderer()
    else:
        renderer = structlog.processors.JSONRenderer(serializer=lambda o, **_: orjson.dumps(o).decode())
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=[_drop_meta, renderer])
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    for name in ("chirp", "faststream", "uvicorn.error"):
        logging.getLogger(name).setLevel(level)


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
