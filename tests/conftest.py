"""Fixtures every test gets."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Put structlog's configuration back after each test.

    ``shardline run`` points structlog at ``<out>/events.jsonl`` (a file it
    closes on return) and quiet helpers raise the level to critical; either
    left in place would silence, or break, the events later tests capture.
    """
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)
