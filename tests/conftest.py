"""Fixtures every test gets."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import pytest
import structlog

from tests._postgres import ThrowawayPostgres


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
