"""Logging set-up for applications that embed the runtime.

The runtime only *emits* structlog events (``actor.started``,
``actor.crashed``, ``actor.restarted``, ``supervisor.escalated``,
``actor.stopped``, ``fault.injected``, ``message.dropped``,
``message.dead_letter``...); how they are rendered is the application's
choice. Call :func:`configure_logging` once at start-up, or configure
structlog yourself.

Until one of those happens, importing ``runtime`` installs a quiet default
(as Python's ``logging`` prints warnings to stderr when nothing is
configured): events at ``warning`` and above, one line each, to standard
error, an exception as ``error="InjectedFault: ..."`` on that line, never a
multi-line traceback. Standard output stays the application's. If the
application configured structlog before importing ``runtime``, nothing is
changed.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time of each event (a test's capture,
    a redirected stream), not to the stream that was current at import."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def exception_on_one_line(logger: object, method: str,
                          event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Replace ``exc_info`` by ``error="Type: message"``: one line per event, however
    many crashes (a traceback is for a debugger, not for a supervisor's log)."""
    exc = event.pop("exc_info", None)
    if isinstance(exc, tuple):
        exc = exc[1]
    if isinstance(exc, BaseException):
        event.setdefault("error", f"{type(exc).__name__}: {exc}")
    return event


_LEVELS = {**logging.getLevelNamesMapping(), "WARN": logging.WARNING,
           "EXCEPTION": logging.ERROR, "MSG": logging.INFO}


class _AtLeast:
    """Drop events below ``level``, as a processor: ``structlog.testing.capture_logs``
    replaces the processors, so a test still captures every event."""

    def __init__(self, level: int) -> None:
        self.level = level

    def __call__(self, logger: object, method: str,
                 event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        if _LEVELS.get(method.upper(), logging.INFO) < self.level:
            raise structlog.DropEvent
        return event


def configure_logging(
    *, json: bool = False, level: str = "info", stream: TextIO | None = None,
    tracebacks: bool = False,
) -> None:
    """Render Shardline's events as JSON lines or for a console, at ``level`` and above,
    to ``stream`` (standard error by default).

    On the console an exception is one ``error=`` field unless ``tracebacks``
    asks for the full (plain, uncoloured) traceback; in JSON it is the
    ``exception`` field.
    """
    exceptions: structlog.typing.Processor
    if json:
        exceptions = structlog.processors.format_exc_info
    elif tracebacks:
        exceptions = structlog.dev.set_exc_info
    else:
        exceptions = exception_on_one_line
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback)
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            exceptions,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(stream or _CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )


def install_default_logging() -> None:
    """The quiet default of the module docstring, unless structlog is configured already.

    The level is a processor here, not the bound logger's filter, so
    ``structlog.testing.capture_logs`` still sees every event.
    """
    if not structlog.is_configured():
        structlog.configure(
            processors=[
                _AtLeast(logging.WARNING),
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso"),
                exception_on_one_line,
                structlog.dev.ConsoleRenderer(colors=False),
            ],
            logger_factory=structlog.PrintLoggerFactory(_CurrentStderr()),  # type: ignore[arg-type]
        )
