"""Logging set-up for applications that embed the runtime.

The runtime only *emits* structlog events (``actor.started``,
``actor.crashed``, ``actor.restarted``, ``supervisor.escalated``,
``actor.stopped``, ``fault.injected``, ``message.dropped``,
``message.dead_letter``...); how they are rendered is the application's
choice. Call this once at start-up, or configure structlog yourself.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog


def configure_logging(
    *, json: bool = False, level: str = "info", stream: TextIO | None = None
) -> None:
    """Render Shardline's events as JSON lines or for a console, at ``level`` and above."""
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.format_exc_info if json else structlog.dev.set_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
