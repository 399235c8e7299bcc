"""``postgresql://`` URLs: which server, which database, which schema.

    postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?OPTIONS]
    postgres://...                      (the same; libpq accepts both)

Options (every one either means something or is refused):

    schema=NAME           the PostgreSQL schema holding the store's tables
                          (default ``shardline``; letters, digits, ``_``)
    pool_size=N           connections per store, 2..64 (default 4: one
                          commits write batches, the rest serve reads and leases)
    connect_timeout=SECS  give up connecting after SECS seconds (default 10)
    sslmode=MODE          disable, prefer, require, verify-ca, verify-full
                          (default prefer, as libpq)

The password may be left out of the URL: it is then taken from
``PGPASSWORD`` or ``~/.pgpass`` as libpq does. Wherever a URL is shown
(errors, reports, logs) the password is replaced by ``***``: a
:class:`PostgresTarget` never prints it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import SplitResult, parse_qsl, unquote

from runtime._errors import StoreURLError

SslMode = Literal["disable", "prefer", "require", "verify-ca", "verify-full"]
SSL_MODES: tuple[SslMode, ...] = ("disable", "prefer", "require", "verify-ca", "verify-full")
DEFAULT_PORT = 5432
DEFAULT_SCHEMA = "shardline"
_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_POOL_SIZES = (2, 64)


@dataclass(frozen=True, slots=True)
class PostgresTarget:
    """Where a postgresql store lives. ``repr``/``str`` never include the password."""

    host: str
    port: int
    user: str | None
    database: str
    schema: str = DEFAULT_SCHEMA
    pool_size: int = 4
    connect_timeout: float = 10.0
    sslmode: SslMode = "prefer"
    password: str | None = field(default=None, repr=False)

    def describe(self) -> str:
        """``host H, port P, database 'D'`` (+ user, schema): for error messages."""
        user = f", user {self.user!r}" if self.user else ""
        return (f"host {self.host}, port {self.port}, database {self.database!r}{user}, "
                f"schema {self.schema!r}")

    def __str__(self) -> str:
        return self.describe()


def redact(url: str, parts: SplitResult) -> str:
    """``url`` with the password of its user part replaced by ``***``."""
    if parts.password is None:
        return url
    userinfo, _, _ = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return url.replace(f"{userinfo}@", f"{user}:***@", 1)


def _fail(shown: str, problem: str) -> StoreURLError:
    return StoreURLError(f"store URL {shown!r}: {problem}")


def _options(shown: str, query: str) -> dict[str, str]:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as exc:
        raise _fail(shown, f"malformed query: {exc}") from None
    known = ("schema", "pool_size", "connect_timeout", "sslmode")
    options: dict[str, str] = {}
    for name, value in pairs:
        if name not in known:
            raise _fail(shown, f"unknown option {name!r}; postgresql takes "
                               + ", ".join(known))
        options[name] = value
    return options


def _number(shown: str, name: str, value: str, low: float, high: float) -> float:
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not low <= number <= high:
        raise _fail(shown, f"{name}={value!r}; expected a number from {low:g} to {high:g}")
    return number


def parse_postgres_url(url: str, parts: SplitResult) -> PostgresTarget:
    """Check every part of a ``postgresql://`` URL; ``StoreURLError`` shows it redacted."""
    shown = redact(url, parts)
    try:
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise _fail(shown, f"bad port: {exc}") from None
    if not host:
        raise _fail(shown, "names no host; expected postgresql://USER@HOST[:PORT]/DATABASE")
    database = unquote(parts.path[1:]) if parts.path else ""
    if not database or "/" in database:
        raise _fail(shown, "expected one database name after the host, as in "
                           "postgresql://USER@HOST[:PORT]/DATABASE")
    options = _options(shown, parts.query)
    schema = options.get("schema", DEFAULT_SCHEMA)
    if not _SCHEMA_NAME.fullmatch(schema):
        raise _fail(shown, f"schema={schema!r}; expected a name of letters, digits and _ "
                           "(not starting with a digit, at most 63 characters)")
    sslmode = options.get("sslmode", "prefer")
    if sslmode not in SSL_MODES:
        raise _fail(shown, f"sslmode={sslmode!r}; expected one of {', '.join(SSL_MODES)}")
    pool_size = _number(shown, "pool_size", options.get("pool_size", "4"), *_POOL_SIZES)
    if pool_size != int(pool_size):
        raise _fail(shown, f"pool_size={options['pool_size']!r}; expected a whole number")
    return PostgresTarget(
        host=host,
        port=port or DEFAULT_PORT,
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        database=database,
        schema=schema,
        pool_size=int(pool_size),
        connect_timeout=_number(shown, "connect_timeout",
                                options.get("connect_timeout", "10"), 0.1, 3600),
        sslmode=sslmode,
    )
