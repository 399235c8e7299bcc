"""Store URLs: which backend, which file, which durability.

    memory://                      a fresh, empty store in this process
    sqlite:///relative/path.db     relative to the working directory
    sqlite:////absolute/path.db    (four slashes: the path itself starts with /)
    sqlite:///x.db?synchronous=full   fsync every commit (survive power loss)
    sqlite:///x.db?wal_pages=256      WAL pages before a commit checkpoints inline
                                   (default 4096; the WAL file's bound)
    postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?schema=NAME&...]
                                   a schema in a PostgreSQL database that many
                                   processes share (options: ``_postgres_target``)

Every part of a URL either means something or is refused with a
``StoreURLError`` naming the URL: a typo must not silently select a default.
A password in a URL is shown as ``***`` in every message (``shown_url``).
"""

from __future__ import annotations

from pathlib import Path
from typing import cast
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

from runtime._errors import StoreURLError
from runtime.store._base import Store
from runtime.store._memory import MemoryStore
from runtime.store._postgres_target import PostgresTarget, parse_postgres_url, redact
from runtime.store._sqlite import open_sqlite
from runtime.store._sqlite_file import WAL_PAGES, Synchronous
from runtime.store._types import Clock

SUPPORTED_SCHEMES = ("memory", "sqlite", "postgresql")
_POSTGRES_SCHEMES = ("postgresql", "postgres")
_PLANNED_SCHEMES = ("redis", "rediss")
_SYNCHRONOUS_MODES: tuple[Synchronous, ...] = ("normal", "full")


def _split(url: str) -> SplitResult:
    if not isinstance(url, str):
        raise TypeError(f"a store URL is a str, got {url!r}")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise StoreURLError(f"store URL {shown_url(url)!r} cannot be parsed: {exc}") from None
    if not parts.scheme or "://" not in url:
        raise StoreURLError(
            f"store URL {shown_url(url)!r} is not of the form scheme://...; expected one of "
            + ", ".join(f"{s}://" for s in SUPPORTED_SCHEMES)
        )
    if parts.fragment:
        raise StoreURLError(
            f"store URL {shown_url(url)!r} has a #fragment, which means nothing here")
    return parts


def _sqlite_options(url: str, query: str) -> tuple[Synchronous, int]:
    synchronous: Synchronous = "normal"
    wal_pages = WAL_PAGES
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as exc:
        raise StoreURLError(f"store URL {shown_url(url)!r} has a malformed query: {exc}") from exc
    for name, value in pairs:
        if name == "wal_pages":
            if not value.isdigit() or not 16 <= int(value) <= 1_000_000:
                raise StoreURLError(f"store URL {shown_url(url)!r}: wal_pages={value!r}; "
                                    "expected an integer in 16..1000000")
            wal_pages = int(value)
            continue
        if name != "synchronous":
            raise StoreURLError(
                f"store URL {shown_url(url)!r}: unknown option {name!r}; "
                "sqlite takes only 'synchronous' and 'wal_pages'"
            )
        if value.lower() not in _SYNCHRONOUS_MODES:
            raise StoreURLError(
                f"store URL {shown_url(url)!r}: synchronous={value!r}; expected one of "
                + ", ".join(_SYNCHRONOUS_MODES)
            )
        synchronous = cast(Synchronous, value.lower())
    return synchronous, wal_pages


def _sqlite_path(url: str, parts: SplitResult) -> Path:
    if parts.netloc:
        raise StoreURLError(
            f"store URL {shown_url(url)!r} names host {parts.hostname!r}; sqlite URLs have "
            "none: use sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    path = unquote(parts.path)[1:]  # the slash after the empty host is not part of the path
    if not path:
        raise StoreURLError(
            f"store URL {shown_url(url)!r} names no database file; use sqlite:///relative/path.db "
            "or sqlite:////absolute/path.db"
        )
    return Path(path).absolute()


def check_store_url(url: str) -> None:
    """Validate a store URL without opening anything (``shardline validate`` uses it)."""
    _parse(url)


def shown_url(url: str) -> str:
    """``url`` as it may be printed or logged: a password in it becomes ``***``."""
    try:
        return redact(url, urlsplit(url))
    except ValueError:
        return url if "@" not in url else "<store URL not shown: it may hold a password>"


def _parse(url: str) -> tuple[str, Path | PostgresTarget | None, tuple[Synchronous, int]]:
    parts = _split(url)
    scheme = parts.scheme.lower()
    if scheme == "memory":
        if parts.netloc or parts.path or parts.query:
            raise StoreURLError(
                f"store URL {shown_url(url)!r}: memory:// takes no host, path or query")
        return scheme, None, ("normal", WAL_PAGES)
    if scheme == "sqlite":
        return scheme, _sqlite_path(url, parts), _sqlite_options(url, parts.query)
    if scheme in _POSTGRES_SCHEMES:
        return "postgresql", parse_postgres_url(url, parts), ("normal", WAL_PAGES)
    if scheme in _PLANNED_SCHEMES:
        raise StoreURLError(
            f"store URL {shown_url(url)!r}: the redis backend is not available yet; "
            f"supported schemes: {', '.join(SUPPORTED_SCHEMES)}"
        )
    raise StoreURLError(
        f"store URL {shown_url(url)!r}: unknown scheme {parts.scheme!r}; "
        f"supported schemes: {', '.join(SUPPORTED_SCHEMES)}"
    )


async def open_store(url: str, *, clock: Clock) -> Store:
    """Open the store a URL names, with ``clock`` judging lease expiry.

    ``clock`` is the runtime's clock; a postgresql store handed one that
    reads real time judges leases by the database server's clock instead
    (see ``runtime.store._postgres``), so machines with skewed clocks agree.

    Raises ``StoreURLError`` for a URL that is malformed or names an
    unsupported backend, and ``StoreError`` (naming the path, or the host,
    port and database, and the cause) when the store cannot be opened: a
    sqlite file or a postgresql schema that is not a Shardline store of a
    version this code reads is never modified.
    """
    scheme, where, (synchronous, wal_pages) = _parse(url)
    if scheme == "memory":
        return MemoryStore(clock)
    if isinstance(where, PostgresTarget):
        from runtime.store._postgres import open_postgres  # imports the driver: only if used

        return await open_postgres(where, clock=clock)
    assert where is not None
    return open_sqlite(where, synchronous=synchronous, clock=clock, wal_pages=wal_pages)


def store_location(url: str) -> Path | PostgresTarget | None:
    """Where a URL's store lives: the sqlite database file, the postgresql schema, or
    ``None`` for ``memory://``; ``StoreURLError`` if the URL is bad. Opens nothing."""
    return _parse(url)[1]


async def drop_store(where: Path | PostgresTarget | None) -> str | None:
    """Drop the postgresql schema ``where`` names, for ``shardline run --fresh``.

    Only a Shardline store's schema is dropped. A sqlite file (a ``Path``) is
    left to the caller, which removes it with its ``-wal`` and ``-shm`` files.
    Returns a description of what was dropped, or ``None``.
    """
    if not isinstance(where, PostgresTarget):
        return None
    from runtime.store._postgres_connect import drop_store_schema  # imports the driver

    if await drop_store_schema(where):
        return f"store schema {where.schema!r} at {where.describe()}"
    return None
