"""The tables of a postgresql store, created on first use inside one named schema.

Layout (every key column is ``COLLATE "C"``: byte order, which for UTF-8 is
code-point order, so ``scan``/``leases`` sort exactly as the other backends
and a prefix is an index range):

    meta         one row: the schema version this store was written with
    logs         per log, the next seq (the row a batch locks to append) and the
                 floor (first live seq; entries below it were truncated)
    log_entries  (log, seq) -> key, payload
    records      key -> value (NULL: deleted, version kept), version
    leases       key -> owner (NULL: released), newest token, expires_at

Policy: a schema that does not exist is created, with its tables and the
version row, in one transaction under an advisory lock (so processes
starting together do not race); so are the tables in an existing schema
that holds nothing (one a DBA created for the store's role). A schema that
holds anything is only *read* here:
version :data:`SCHEMA_VERSION` is used as it is; version 1 (before
``logs.floor``) is upgraded in place, under the same lock; a newer, unknown or missing
version row, or a schema holding tables that are not a Shardline store, is
refused with ``StoreError`` and left exactly as it was.

Text columns cannot hold a NUL character or a lone surrogate: ``unstorable``
finds such a name before its write joins a batch, so it fails alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runtime._errors import StoreError
from runtime.store._types import Append, Fence, Truncate, WriteOp

if TYPE_CHECKING:
    from runtime.store._postgres_connect import Connection

SCHEMA_VERSION = 2
_UPGRADABLE = 1
"""Version 1 lacks ``logs.floor``; adding the column (default 0) makes it version 2."""
_CREATION_LOCK = 0x53484C4E  # "SHLN": one advisory lock id for every creation


def _tables(s: str) -> tuple[str, ...]:
    return (
        f"CREATE SCHEMA {s}",
        f"""CREATE TABLE {s}.meta (
            singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
            schema_version integer NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now())""",
        f"""CREATE TABLE {s}.logs (
            log text COLLATE "C" PRIMARY KEY, next_seq bigint NOT NULL,
            floor bigint NOT NULL DEFAULT 0)""",
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


def unstorable(ops: list[WriteOp], fence: Fence | None) -> str | None:
    """Why PostgreSQL text cannot hold a name of this write (NUL, lone surrogate)."""
    names = [fence.lease_key] if fence is not None else []
    for op in ops:
        if isinstance(op, Append):
            names.append(op.log)
            names.extend(key for key, _ in op.entries)
        elif isinstance(op, Truncate):
            names.append(op.log)
        else:
            names.append(op.key)
    for name in names:
        if "\x00" in name:
            return f"{name!r} contains a NUL character, which PostgreSQL text cannot hold"
        try:
            name.encode()
        except UnicodeEncodeError:
            return f"{name!r} is not valid UTF-8 text"
    return None


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
        tables = await conn.fetchval(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = $1", schema)
        if not exists or not tables:
            for statement in _tables(s)[0 if not exists else 1:]:
                await conn.execute(statement)
            return True
        if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{s}.meta"):
            raise StoreError(
                f"postgresql store at {where}: schema {schema!r} exists but is not a "
                f"Shardline store (no meta table; {tables} relations); left untouched")
        versions = [row[0] for row in await conn.fetch(f"SELECT schema_version FROM {s}.meta")]
        if versions == [_UPGRADABLE]:
            await conn.execute(
                f"ALTER TABLE {s}.logs ADD COLUMN floor bigint NOT NULL DEFAULT 0")
            await conn.execute(f"UPDATE {s}.meta SET schema_version = {SCHEMA_VERSION}")
            return False
    if versions != [SCHEMA_VERSION]:
        found = "no version row" if not versions else f"schema version {versions[0]}"
        newer = " (newer than this Shardline understands)" if (
            versions and versions[0] > SCHEMA_VERSION) else ""
        raise StoreError(
            f"postgresql store at {where}: schema {schema!r} has {found}{newer}; this "
            f"Shardline reads version {SCHEMA_VERSION} only; left untouched")
    return False


class BatchStatements:
    """The two statements of a write batch, besides BEGIN and COMMIT.

    ``lock``: one round trip that inserts placeholder rows for logs and
    records not seen before (absent in meaning: next seq 0, a tombstone of
    version 0, so two processes creating one key queue on its row), then
    locks, in key order, the fence leases, logs and records the batch
    touches, and returns ``(kind, name, number, value)`` rows: ``f`` token,
    ``l`` next seq, ``b`` floor, ``r`` version and value. A row committed by another
    process between this statement's snapshot and its insert is in neither
    part of the result; ``relock_*`` lock such stragglers with a new snapshot.

    ``apply``: one round trip that inserts the new log entries and updates
    the logs' next seqs and the changed records (every row exists by then).

    ``truncate``: run after ``apply`` when the batch truncates (so it sees the
    batch's new entries), deletes the entries below each new floor and
    stores the floor.
    """

    def __init__(self, schema: str) -> None:
        s = quoted(schema)
        self.lock = f"""
            WITH new_logs AS (
                INSERT INTO {s}.logs (log, next_seq) SELECT unnest($2::text[]), 0
                ON CONFLICT DO NOTHING RETURNING log, next_seq, floor),
            new_records AS (
                INSERT INTO {s}.records (key, value, version) SELECT unnest($3::text[]), NULL, 0
                ON CONFLICT DO NOTHING RETURNING key),
            fences AS (
                SELECT key, token FROM {s}.leases WHERE key = ANY($1::text[])
                ORDER BY key FOR UPDATE),
            logs AS (
                SELECT log, next_seq, floor FROM {s}.logs WHERE log = ANY($2::text[])
                ORDER BY log FOR UPDATE),
            records AS (
                SELECT key, value, version FROM {s}.records WHERE key = ANY($3::text[])
                ORDER BY key FOR UPDATE)
            SELECT 'f', key, token, NULL::bytea FROM fences
            UNION ALL SELECT 'l', log, next_seq, NULL FROM logs
            UNION ALL SELECT 'l', log, next_seq, NULL FROM new_logs
            UNION ALL SELECT 'b', log, floor, NULL FROM logs
            UNION ALL SELECT 'b', log, floor, NULL FROM new_logs
            UNION ALL SELECT 'r', key, version, value FROM records
            UNION ALL SELECT 'r', key, 0, NULL FROM new_records"""
        self.relock_logs = (
            f"WITH locked AS (SELECT log, next_seq, floor FROM {s}.logs "
            "WHERE log = ANY($1::text[]) ORDER BY log FOR UPDATE) "
            "SELECT 'l', log, next_seq, NULL::bytea FROM locked "
            "UNION ALL SELECT 'b', log, floor, NULL FROM locked")
        self.relock_records = (f"SELECT 'r', key, version, value FROM {s}.records "
                               "WHERE key = ANY($1::text[]) ORDER BY key FOR UPDATE")
        self.apply = f"""
            WITH entries AS (
                INSERT INTO {s}.log_entries (log, seq, key, payload)
                SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bytea[])),
            logs AS (
                UPDATE {s}.logs AS t SET next_seq = u.next_seq
                FROM unnest($5::text[], $6::bigint[]) AS u(log, next_seq) WHERE t.log = u.log)
            UPDATE {s}.records AS t SET value = u.value, version = u.version
            FROM unnest($7::text[], $8::bytea[], $9::bigint[]) AS u(key, value, version)
            WHERE t.key = u.key"""
        self.truncate = f"""
            WITH gone AS (
                DELETE FROM {s}.log_entries AS e
                USING unnest($1::text[], $2::bigint[]) AS u(log, floor)
                WHERE e.log = u.log AND e.seq < u.floor)
            UPDATE {s}.logs AS t SET floor = u.floor
            FROM unnest($1::text[], $2::bigint[]) AS u(log, floor) WHERE t.log = u.log"""
