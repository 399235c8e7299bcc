"""Connecting a postgresql store, and saying what failed without the password.

Opening is the edge where bad input meets the network: an unreachable
server, a wrong password, a missing database, a role without privileges.
Each becomes one ``StoreError`` naming host, port and database, what failed
and the server's own words, and no message ever carries the password (it is
scrubbed from the cause too, in case a driver or server echoed it).

Why asyncpg: a maintained asyncio driver whose binary protocol and
per-connection prepared-statement cache make the dozen short statements of
a batch cheap; it has a pool, and its connections are plain asyncio
sockets, so simulated time can see and hold around them (``real_io``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg

from runtime._errors import StoreError
from runtime._simloop import real_io
from runtime.store._postgres_schema import prepare_schema, quoted
from runtime.store._postgres_target import PostgresTarget

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

Connection: TypeAlias = "PoolConnectionProxy[asyncpg.Record]"
"""A connection borrowed from a store's pool."""

DATABASE_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    OSError,
    TimeoutError,
)
"""What a call to the database may raise when the database, not the caller, is at fault."""

_WHAT_FAILED: tuple[tuple[type[Exception], str], ...] = (
    (asyncpg.InvalidPasswordError, "authentication failed"),
    (asyncpg.InvalidAuthorizationSpecificationError, "authentication failed"),
    (asyncpg.InvalidCatalogNameError, "the database does not exist"),
    (asyncpg.InsufficientPrivilegeError, "missing privilege"),
    (asyncpg.CannotConnectNowError, "the server is starting or shutting down"),
    (asyncpg.PostgresConnectionError, "the connection failed"),
    (TimeoutError, "no answer from the server"),
    (OSError, "the server is unreachable"),
)


def failure(target: PostgresTarget, action: str, exc: BaseException) -> str:
    """``postgresql store at host H, port P, database 'D': <action>: <what>: <cause>``."""
    what = next((text for kind, text in _WHAT_FAILED if isinstance(exc, kind)), None)
    cause = str(exc) or type(exc).__name__
    if isinstance(exc, TimeoutError):
        cause = f"timed out after {target.connect_timeout:g} s"
    if target.password:
        cause = cause.replace(target.password, "***")
    return (f"postgresql store at {target.describe()}: {action}: "
            + (f"{what}: " if what else "") + cause)


async def _no_reset(conn: asyncpg.Connection) -> None:
    """Skip the pool's reset round trip: the store keeps no session state
    (no SET, LISTEN, cursors or session advisory locks) to reset."""


def _server(target: PostgresTarget) -> dict[str, Any]:
    """Where and how to connect: the arguments every asyncpg connection of a store takes."""
    return {"host": target.host, "port": target.port, "user": target.user,
            "password": target.password, "database": target.database,
            "ssl": target.sslmode, "timeout": target.connect_timeout}


async def open_pool(target: PostgresTarget) -> asyncpg.Pool:
    """A connected pool whose schema is ready (created or checked; see ``_postgres_schema``)."""
    with real_io():
        try:
            pool = await asyncpg.create_pool(
                **_server(target), min_size=1, max_size=target.pool_size,
                max_inactive_connection_lifetime=0, reset=_no_reset,
                server_settings={"application_name": "shardline"})
        except DATABASE_ERRORS as exc:
            raise StoreError(failure(target, "cannot connect", exc)) from None
        try:
            async with pool.acquire() as conn:
                await prepare_schema(conn, target.schema, target.describe())
        except BaseException as exc:
            pool.terminate()
            if isinstance(exc, DATABASE_ERRORS):
                raise StoreError(failure(target, f"cannot prepare schema {target.schema!r}",
                                         exc)) from None
            raise
    return pool


async def drop_store_schema(target: PostgresTarget) -> bool:
    """Drop the store's schema (``shardline run --fresh``); False if there was none.

    Only a Shardline store is dropped: a schema without our ``meta`` table is
    refused with ``StoreError`` and left as it is.
    """
    with real_io():
        try:
            conn = await asyncpg.connect(**_server(target))
        except DATABASE_ERRORS as exc:
            raise StoreError(failure(target, "cannot connect", exc)) from None
        try:
            s = quoted(target.schema)
            if not await conn.fetchval(
                    "SELECT count(*) FROM pg_namespace WHERE nspname = $1", target.schema):
                return False
            if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{s}.meta"):
                raise StoreError(
                    f"postgresql store at {target.describe()}: schema {target.schema!r} is "
                    "not a Shardline store (no meta table); not dropped")
            await conn.execute(f"DROP SCHEMA {s} CASCADE")
            return True
        except DATABASE_ERRORS as exc:
            raise StoreError(failure(target, f"cannot drop schema {target.schema!r}",
                                     exc)) from None
        finally:
            await conn.close()
