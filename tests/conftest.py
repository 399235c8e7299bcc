"""Fixtures every test gets."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator

import pytest
import structlog

from tests._postgres import ThrowawayPostgres

# tmp_path directories live in RAM where the machine has a tmpfs: the runs' sinks and
# stores fsync every batch, and on a disk shared with other jobs each fsync can take
# milliseconds (a stream test spent 3/4 of its time there). A process kill, the only
# crash the tests inflict, loses nothing either way. pytest reads this variable at the
# first tmp_path; one the user set, or --basetemp, wins. No test's figures may depend on
# disk timing (a SQLite store measured by size holds its WAL to a few pages).
if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
    os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", "/dev/shm")


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


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[ThrowawayPostgres]:
    """One throwaway PostgreSQL server for the whole session (see ``tests/_postgres.py``).

    Started on first use, removed at the end. Missing binaries fail the
    tests that use it (``PostgresUnavailable``); they are never skipped.
    """
    with ThrowawayPostgres() as server:
        yield server


_schemas = itertools.count()


@pytest.fixture
def postgres_url(postgres_server: ThrowawayPostgres) -> Callable[..., str]:
    """A factory of ``postgresql://`` store URLs, each naming a schema no test used before.

    ``postgres_url()`` is a fresh, empty store (created on first open);
    keyword arguments go to :meth:`ThrowawayPostgres.url` (``user``,
    ``password``, ``database``, URL options). Call it twice for two stores.
    """

    def fresh(**kwargs: str) -> str:
        return postgres_server.url(f"t{next(_schemas)}", **kwargs)

    return fresh
