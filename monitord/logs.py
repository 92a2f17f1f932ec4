"""structlog set-up: JSON lines when not on a TTY, and a last-line-of-defence secret scrubber.

Code never logs secrets on purpose; the scrubber exists because exceptions from libraries can
carry request URLs or bodies, and one leaked AK/SK in a log shipper is one too many.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, Final

import structlog

from monitord import redact

REDACTED: Final = redact.REDACTED
# The scrubber lives in monitord.redact (every output path uses it); these names stay for callers.
register_secret = redact.register
scrub = redact.scrub


def _scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, Mapping):
        return {k: _scrub_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub_value(v) for v in value]
    if isinstance(value, BaseException):
        return scrub(f"{type(value).__name__}: {value}")
    return value


def scrub_processor(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in list(event.items()):
        event[key] = _scrub_value(value)
    return event


def _final_scrub(
    _logger: Any, _name: str, rendered: str | MutableMapping[str, Any]
) -> str | MutableMapping[str, Any]:
    # Rendered exception tracebacks are strings only after format_exc_info; scrub the final text too.
    # This runs after the renderer, so it gets a string; structlog's types say every processor
    # takes an event dict, hence the union. A dict (no renderer) was scrubbed by scrub_processor.
    return scrub(rendered) if isinstance(rendered, str) else rendered


def configure(level: str = "info", json: bool | None = None, stream: Any = None) -> None:
    stream = stream if stream is not None else sys.stderr
    if json is None:
        json = not (hasattr(stream, "isatty") and stream.isatty())
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            scrub_processor,
            structlog.processors.format_exc_info,
            renderer,
            _final_scrub,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    # Libraries log through the standard library (aiohttp's "Error handling request" with a
    # traceback, asyncio's "Task exception was never retrieved"): without a handler Python
    # prints those to stderr as they are, unscrubbed. Route them through the same pipeline.
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _StdlibToStructlog)]:
        root.removeHandler(handler)
    root.addHandler(_StdlibToStructlog(logging.WARNING))


class _StdlibToStructlog(logging.Handler):
    """Standard-library log records (WARNING and up) as structlog events: scrubbed, one format."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            extra: dict[str, Any] = {"exc_info": record.exc_info} if record.exc_info else {}
            structlog.get_logger(record.name).bind(logger=record.name).log(
                record.levelno, record.getMessage(), **extra)
        except Exception:
            self.handleError(record)


def get(name: str = "monitord", **context: Any) -> Any:
    return structlog.get_logger(name).bind(**context)
