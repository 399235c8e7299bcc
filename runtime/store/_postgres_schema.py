"""The tables of a postgresql store, created on first use inside one named schema.

Layout (every key column is ``COLLATE "C"``: byte order, which for UTF-8 is
code-point order, so ``scan``/``leases`` sort exactly as the other backends
and a prefix is an index range):

    meta         one row: the schema version this store was written with
    logs         per log, the next seq (the row a batch locks to append)
    log_entries  (log, seq) -> key, payload
    records      key -> value (NULL: deleted, version kept), version
    leases       key -> owner (NULL: released), newest token, expires_at

Policy: a schema that does not exist is created, with its tables and the
version row, in one transaction under an advisory lock (so processes
starting together do not race). A schema that exists is only *read* here:
version :data:`SCHEMA_VERSION` is used as it is; a newer, unknown or missing
version row, or a schema holding tables that are not a Shardline store, is
refused with ``StoreError`` and left exactly as it was.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runtime._errors import StoreError

if TYPE_CHECKING:
    from runtime.store._postgres_connect import Connection

SCHEMA_VERSION = 1
_CREATION_LOCK = 0x53484C4E  # "SHLN": one advisory lock id for every creation


def _tables(s: str) -> tuple[str, ...]:
    return (
        f"CREATE SCHEMA {s}",
        f"""CREATE TABLE {s}.meta (
            singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
            schema_version integer NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now())""",
        f"""CREATE TABLE {s}.logs (
            log text COLLATE "C" PRIMARY KEY, next_seq bigint NOT NULL)""",
        f"""CREATE TABLE {s}.log_entries (
            log text COLLATE "C" NOT NULL, seq bigint NOT NULL,
            key text NOT NULL, payload bytea NOT NULL, PRIMARY KEY (log, seq))""",
        f"""CREATE TABLE {s}.records (
            key text COLLATE "C" PRIMARY KEY, value bytea, version bigint NOT NULL)""",
        f"""CREATE TABLE {s}.leases (
            key text COLLATE "C" PRIMARY KEY, owner text, token bigint NOT NULL,
            expires_at double precision NOT NULL)""",
        f"INSERT INTO {s}.meta (schema_version) VALUES ({SCHEMA_VERSION})",
    )


def quoted(schema: str) -> str:
    """The schema as a quoted identifier (names are checked when the URL is parsed)."""
    return '"' + schema.replace('"', '""') + '"'


async def prepare_schema(conn: Connection, schema: str, where: str) -> bool:
    """Create the store in ``schema`` if absent, else check its version; True if created.

    ``where`` names the server for error messages (never the password).
    """
    s = quoted(schema)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _CREATION_LOCK)
        exists = await conn.fetchval(
            "SELECT count(*) FROM pg_namespace WHERE nspname = $1", schema)
        if not exists:
            for statement in _tables(s):
                await conn.execute(statement)
            return True
        tables = await conn.fetchval(
            "SELECT count(*) FROM pg_tables WHERE schemaname = $1", schema)
        if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{s}.meta"):
            raise StoreError(
                f"postgresql store at {where}: schema {schema!r} exists but is not a "
                f"Shardline store (no meta table; {tables} tables); left untouched")
        versions = [row[0] for row in await conn.fetch(f"SELECT schema_version FROM {s}.meta")]
    if versions != [SCHEMA_VERSION]:
        found = "no version row" if not versions else f"schema version {versions[0]}"
        newer = " (newer than this Shardline understands)" if (
            versions and versions[0] > SCHEMA_VERSION) else ""
        raise StoreError(
            f"postgresql store at {where}: schema {schema!r} has {found}{newer}; this "
            f"Shardline reads version {SCHEMA_VERSION} only; left untouched")
    return False
