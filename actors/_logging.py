"""structlog, configured once at start: JSON when stdout is not a terminal."""

from __future__ import annotations

import logging
import sys

import msgspec
import structlog

__all__ = ["configure_logging"]


def configure_logging(level: str = "info", *, json: bool | None = None) -> None:
    """Configure structlog for the process; ``json`` defaults to "stdout is not a tty"."""
    as_json = not sys.stdout.isatty() if json is None else json
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    processors: list[structlog.types.Processor]
    if as_json:
        encoder = msgspec.json.Encoder(enc_hook=repr)
        processors = [
            *shared,
            structlog.processors.dict_tracebacks,
            structlog.processors.JSONRenderer(serializer=lambda obj, **_: encoder.encode(obj)),
        ]
        factory: structlog.types.WrappedLogger = structlog.BytesLoggerFactory()
    else:
        processors = [*shared, structlog.dev.ConsoleRenderer()]
        factory = structlog.PrintLoggerFactory()
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
