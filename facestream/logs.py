"""structlog set-up: pretty on a terminal, JSON lines otherwise (production)."""

from __future__ import annotations

import logging
import sys

import structlog

from facestream.schemas import redact_event

from .config import LogSettings

__all__ = ["configure_logging"]


def configure_logging(settings: LogSettings, process: str | None = None) -> None:
    """Route structlog (and stdlib logging) to stderr in the chosen format."""
    level = getattr(logging, settings.level.upper())
    use_json = settings.format == "json" or (settings.format == "auto" and not sys.stderr.isatty())
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        # Tracebacks become text first, so that credentials in them are redacted too.
        structlog.processors.format_exc_info,
        redact_event,
    ]
    if use_json:
        processors.append(structlog.processors.JSONRenderer())
    else:
        processors.append(structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    if process:
        structlog.contextvars.bind_contextvars(process=process)
