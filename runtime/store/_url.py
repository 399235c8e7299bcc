"""Store URLs: which backend, which file, which durability.

    memory://                      a fresh, empty store in this process
    sqlite:///relative/path.db     relative to the working directory
    sqlite:////absolute/path.db    (four slashes: the path itself starts with /)
    sqlite:///x.db?synchronous=full   fsync every commit (survive power loss)

Every part of a URL either means something or is refused with a
``StoreURLError`` naming the URL: a typo must not silently select a default.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

from runtime._errors import StoreURLError
from runtime.store._base import Store
from runtime.store._memory import MemoryStore
from runtime.store._sqlite import Synchronous, open_sqlite
from runtime.store._types import Clock

SUPPORTED_SCHEMES = ("memory", "sqlite")
_PLANNED_SCHEMES = ("redis", "rediss")
_SYNCHRONOUS_MODES: tuple[Synchronous, ...] = ("normal", "full")


def _split(url: str) -> SplitResult:
    if not isinstance(url, str):
        raise TypeError(f"a store URL is a str, got {url!r}")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise StoreURLError(f"store URL {url!r} cannot be parsed: {exc}") from exc
    if not parts.scheme or "://" not in url:
        raise StoreURLError(
            f"store URL {url!r} is not of the form scheme://...; expected one of "
            + ", ".join(f"{s}://" for s in SUPPORTED_SCHEMES)
        )
    if parts.fragment:
        raise StoreURLError(f"store URL {url!r} has a #fragment, which means nothing here")
    return parts


def _sqlite_options(url: str, query: str) -> Synchronous:
    synchronous: Synchronous = "normal"
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as exc:
        raise StoreURLError(f"store URL {url!r} has a malformed query: {exc}") from exc
    for name, value in pairs:
        if name != "synchronous":
            raise StoreURLError(
                f"store URL {url!r}: unknown option {name!r}; sqlite takes only 'synchronous'"
            )
        if value.lower() not in _SYNCHRONOUS_MODES:
            raise StoreURLError(
                f"store URL {url!r}: synchronous={value!r}; expected one of "
                + ", ".join(_SYNCHRONOUS_MODES)
            )
        synchronous = cast(Synchronous, value.lower())
    return synchronous


def _sqlite_path(url: str, parts: SplitResult) -> Path:
    if parts.netloc:
        raise StoreURLError(
            f"store URL {url!r} names host {parts.netloc!r}; sqlite URLs have none: use "
            "sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    path = unquote(parts.path)[1:]  # the slash after the empty host is not part of the path
    if not path:
        raise StoreURLError(
            f"store URL {url!r} names no database file; use sqlite:///relative/path.db "
            "or sqlite:////absolute/path.db"
        )
    return Path(path).absolute()


def check_store_url(url: str) -> None:
    """Validate a store URL without opening anything (``shardline validate`` uses it)."""
    _parse(url)


def _parse(url: str) -> tuple[str, Path | None, Synchronous]:
    parts = _split(url)
    scheme = parts.scheme.lower()
    if scheme == "memory":
        if parts.netloc or parts.path or parts.query:
            raise StoreURLError(f"store URL {url!r}: memory:// takes no host, path or query")
        return scheme, None, "normal"
    if scheme == "sqlite":
        return scheme, _sqlite_path(url, parts), _sqlite_options(url, parts.query)
    if scheme in _PLANNED_SCHEMES:
        raise StoreURLError(
            f"store URL {url!r}: the redis backend is not available yet; "
            f"supported schemes: {', '.join(SUPPORTED_SCHEMES)}"
        )
    raise StoreURLError(
        f"store URL {url!r}: unknown scheme {parts.scheme!r}; "
        f"supported schemes: {', '.join(SUPPORTED_SCHEMES)}"
    )


async def open_store(url: str, *, clock: Clock) -> Store:
    """Open the store a URL names, with ``clock`` judging lease expiry.

    Raises ``StoreURLError`` for a URL that is malformed or names an
    unsupported backend, and ``StoreError`` (naming the path and the cause)
    when a sqlite file cannot be opened as a Shardline store; such a file is
    never modified.
    """
    scheme, path, synchronous = _parse(url)
    if scheme == "memory":
        return MemoryStore(clock)
    assert path is not None
    return open_sqlite(path, synchronous=synchronous, clock=clock)


def store_file(url: str) -> Path | None:
    """The database file a URL names (``None`` for ``memory://``); ``StoreURLError`` if bad."""
    return _parse(url)[1]
