"""``sqlite://``: the contract in one SQLite file, with group commit.

Durability: WAL journal. ``synchronous=NORMAL`` (the default) keeps every
acknowledged write through a crash or ``kill -9`` of the process;
``synchronous=FULL`` also through power loss, at an fsync per commit.

Why every call is synchronous on the event-loop thread: no thread means no
scheduling the simulator cannot see, so simulated runs stay deterministic.
Blocking is short because writes are batched: every ``write`` issued during
one loop iteration is committed by a single transaction (group commit), one
SAVEPOINT per write so a refused write rolls back alone while the rest of
its batch commits. A write returns only after its batch's COMMIT.

One owner per file: the store holds an exclusive ``flock`` on a sidecar
``<file>-lock``, so a second store on the same file (in any process) fails
to open instead of silently breaking the per-log seq cache. The lock dies
with the process. (Not SQLite's own exclusive locking mode: that would shut
out the checkpointer's connection.)

Checkpoints run on a background thread (``_Checkpointer``) with a
connection of its own, not inside a COMMIT on the event loop: copying WAL
pages back into a large database and fsyncing it took 3-4 ms, which was the
whole of the p99.9 of a read woken by an append. A PASSIVE checkpoint never
blocks the writer, and it changes where pages live, not what any read sees,
so simulated runs stay deterministic. A COMMIT still checkpoints inline past
``WAL_PAGES`` (see there).

A file that is not a SQLite database, or is one that some other program
owns, is refused and left untouched (``application_id`` marks ours).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from runtime._errors import ShardlineError, StoreError
from runtime.store._base import Store
from runtime.store._rules import (
    RecordState,
    WritePlan,
    grant_lease,
    is_held,
    plan_write,
    prefix_end,
)
from runtime.store._types import (
    Clock,
    Fence,
    Lease,
    LogEntry,
    StoreSize,
    Versioned,
    WriteOp,
    WriteResult,
)

Synchronous = Literal["normal", "full"]

APPLICATION_ID = 0x53484C4E  # "SHLN"
SCHEMA_VERSION = 2
"""2 added ``log_floors``; a version-1 file gains the (empty) table when opened."""

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS log_entries (
        log TEXT NOT NULL, seq INTEGER NOT NULL, key TEXT NOT NULL, payload BLOB NOT NULL,
        PRIMARY KEY (log, seq)
    ) WITHOUT ROWID""",
    # the first live seq of a truncated log; kept when every entry is gone, so the
    # high water (max(seq) + 1, or the floor) never falls and no seq is reused
    """CREATE TABLE IF NOT EXISTS log_floors (
        log TEXT PRIMARY KEY, floor INTEGER NOT NULL
    ) WITHOUT ROWID""",
    # value NULL marks a deleted key whose last version is kept (see _rules.RecordState)
    """CREATE TABLE IF NOT EXISTS records (
        key TEXT PRIMARY KEY, value BLOB, version INTEGER NOT NULL
    ) WITHOUT ROWID""",
    # owner NULL: released; token is always the newest ever granted for key
    """CREATE TABLE IF NOT EXISTS leases (
        key TEXT PRIMARY KEY, owner TEXT, token INTEGER NOT NULL, expires_at REAL NOT NULL
    ) WITHOUT ROWID""",
)

_UPSERT_RECORD = (
    "INSERT INTO records (key, value, version) VALUES (?, ?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = excluded.version"
)
_UPSERT_LEASE = (
    "INSERT INTO leases (key, owner, token, expires_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, token = excluded.token, "
    "expires_at = excluded.expires_at"
)


@dataclass(slots=True)
class _QueuedWrite:
    ops: list[WriteOp]
    fence: Fence | None
    future: asyncio.Future[WriteResult]


def _refuse_foreign(conn: sqlite3.Connection, path: Path) -> None:
    application_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if application_id == APPLICATION_ID:
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"sqlite store {str(path)!r} has schema version {version}, newer than this "
                f"Shardline understands ({SCHEMA_VERSION}); left untouched"
            )
        return
    tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    if application_id != 0 or tables:
        raise StoreError(
            f"{str(path)!r} is a SQLite database but not a Shardline store "
            f"(application_id {application_id:#x}, {tables} schema objects); left untouched"
        )


def open_sqlite(path: Path, *, synchronous: Synchronous, clock: Clock,
                wal_pages: int | None = None) -> SqliteStore:
    """Open (creating if absent) the store at ``path``; ``StoreError`` names path and cause.

    ``wal_pages`` (default ``WAL_PAGES``) bounds the WAL: a commit past it
    checkpoints inline, and the WAL file is cut back to it when it restarts.
    """
    wal_pages = wal_pages or WAL_PAGES
    if path.is_dir():
        raise StoreError(f"cannot open sqlite store {str(path)!r}: it is a directory")
    if not path.parent.is_dir():
        raise StoreError(
            f"cannot open sqlite store {str(path)!r}: "
            f"parent directory {str(path.parent)!r} does not exist"
        )
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=_BUSY_TIMEOUT)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open sqlite store {str(path)!r}: {exc}") from exc
    lock_fd: int | None = None
    try:
        _refuse_foreign(conn, path)
        lock_fd = _take_owner_lock(path)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        conn.execute(f"PRAGMA wal_autocheckpoint = {wal_pages}")
        # the WAL file shrinks back to this bound when it restarts after a checkpoint
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        conn.execute(f"PRAGMA journal_size_limit = {wal_pages * page_size}")
        conn.execute("BEGIN IMMEDIATE")
        for statement in _SCHEMA:
            conn.execute(statement)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except (sqlite3.Error, StoreError) as exc:
        conn.close()
        if lock_fd is not None:
            os.close(lock_fd)
        if isinstance(exc, StoreError):
            raise
        raise StoreError(f"cannot open sqlite store {str(path)!r}: {exc}") from exc
    return SqliteStore(conn, path, clock, lock_fd)


WAL_PAGES = 4096
"""WAL pages after which a COMMIT checkpoints inline anyway (``wal_pages`` of the URL).
Under writes without pause the background checkpoint never catches the WAL's end, so
the WAL could never restart; the inline one can (most pages are already copied, so it
is short)."""

_KEYS_PER_SELECT = 500
"""Keys per ``SELECT ... IN (...)`` of ``get_many``: under SQLite's bound-variable
limit (999 before SQLite 3.32), and no single statement grows without bound."""

_BUSY_TIMEOUT = 5.0
"""Seconds a statement waits on a lock. Only the checkpointer shares the file, and a
PASSIVE checkpoint takes no lock a writer waits for; this is a safety margin."""


def _take_owner_lock(path: Path) -> int:
    """Hold ``<path>-lock`` exclusively for the store's life (see the module docstring)."""
    lock_path = f"{path}-lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StoreError(f"cannot open sqlite store {str(path)!r}: lock file "
                         f"{lock_path!r}: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        raise StoreError(f"cannot open sqlite store {str(path)!r}: it is locked (another "
                         "store, in this or another process, has it open)") from exc
    return fd


class _Checkpointer:
    """Copies the WAL back into the database on a thread of its own, off the event loop.

    Runs a PASSIVE checkpoint when the writer has committed since the last
    one, at most every ``interval`` seconds; the WAL stays bounded by what
    is written in that time. ``close`` runs a last one and joins the thread.
    """

    def __init__(self, path: Path, interval: float = 0.1) -> None:
        self.path = path
        self.interval = interval
        self.dirty = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"checkpoint {path.name}",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=_BUSY_TIMEOUT)
        except sqlite3.Error:
            return  # the writer's own close-time checkpoint still bounds the WAL
        try:
            while not self._stop.wait(self.interval):
                if self.dirty:
                    self.dirty = False
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error:
            pass  # a failed checkpoint loses nothing: the pages stay in the WAL
        finally:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


class SqliteStore(Store):
    def __init__(self, conn: sqlite3.Connection, path: Path, clock: Clock,
                 lock_fd: int) -> None:
        super().__init__(clock)
        self._conn = conn
        self._lock_fd = lock_fd
        self._checkpointer = _Checkpointer(path)
        self.path = path
        self._queue: list[_QueuedWrite] = []
        self._flush_scheduled = False
        self._next_seqs: dict[str, int] = {}
        """Committed high water per log, loaded on first use; appends never query it."""

    def __repr__(self) -> str:
        return f"<SqliteStore {str(self.path)!r}>"

    @contextmanager
    def _failing_as_store_error(self, action: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(f"{action} in sqlite store {str(self.path)!r} failed: {exc}") from exc

    def _commit_one(self, sql: str, params: tuple[object, ...]) -> None:
        with self._failing_as_store_error("lease update"):
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute(sql, params)
                self._conn.execute("COMMIT")
                self._checkpointer.dirty = True
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
        self._counters.transactions += 1

    # -- logs and records ---------------------------------------------------

    def _committed_next_seq(self, log: str) -> int:
        seq = self._next_seqs.get(log)
        if seq is None:
            (top,) = self._conn.execute(
                "SELECT MAX(seq) FROM log_entries WHERE log = ?", (log,)
            ).fetchone()
            seq = self._next_seqs[log] = max(
                0 if top is None else top + 1, self._committed_floor(log))
        return seq

    def _committed_floor(self, log: str) -> int:
        row = self._conn.execute("SELECT floor FROM log_floors WHERE log = ?", (log,)).fetchone()
        return 0 if row is None else int(row[0])

    def _record_state(self, key: str) -> RecordState | None:
        row = self._conn.execute(
            "SELECT value, version FROM records WHERE key = ?", (key,)
        ).fetchone()
        return None if row is None else RecordState(row[0], row[1])

    def _newest_token(self, key: str) -> int:
        row = self._conn.execute("SELECT token FROM leases WHERE key = ?", (key,)).fetchone()
        return 0 if row is None else int(row[0])

    async def _read(self, log: str, from_seq: int, limit: int) -> list[LogEntry]:
        with self._failing_as_store_error(f"read of log {log!r}"):
            rows = self._conn.execute(
                "SELECT seq, key, payload FROM log_entries WHERE log = ? AND seq >= ? "
                "ORDER BY seq LIMIT ?",
                (log, from_seq, limit),
            ).fetchall()
        return [LogEntry(seq, key, payload) for seq, key, payload in rows]

    async def _high_water(self, log: str) -> int:
        with self._failing_as_store_error(f"high water of log {log!r}"):
            return self._committed_next_seq(log)

    async def _floor(self, log: str) -> int:
        with self._failing_as_store_error(f"floor of log {log!r}"):
            return self._committed_floor(log)

    async def _get(self, key: str) -> Versioned | None:
        with self._failing_as_store_error(f"get of key {key!r}"):
            state = self._record_state(key)
        if state is None or state.value is None:
            return None
        return Versioned(state.value, state.version)

    async def _get_many(self, keys: list[str]) -> dict[str, Versioned]:
        found: dict[str, Versioned] = {}
        with self._failing_as_store_error(f"get of {len(keys)} keys"):
            for start in range(0, len(keys), _KEYS_PER_SELECT):
                chunk = keys[start : start + _KEYS_PER_SELECT]
                rows = self._conn.execute(
                    "SELECT key, value, version FROM records WHERE value IS NOT NULL AND key IN "
                    f"({','.join('?' * len(chunk))})",
                    chunk,
                ).fetchall()
                for key, value, version in rows:
                    found[key] = Versioned(value, version)
        return found

    async def _scan(self, prefix: str) -> list[tuple[str, Versioned]]:
        end = prefix_end(prefix)
        sql = "SELECT key, value, version FROM records WHERE key >= ? AND value IS NOT NULL"
        params: tuple[str, ...] = (prefix,)
        if end:
            sql, params = sql + " AND key < ?", (prefix, end)
        with self._failing_as_store_error(f"scan of prefix {prefix!r}"):
            rows = self._conn.execute(sql + " ORDER BY key", params).fetchall()
        return [(key, Versioned(value, version)) for key, value, version in rows]

    # -- group commit -------------------------------------------------------

    async def _write(self, ops: list[WriteOp], fence: Fence | None) -> WriteResult:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[WriteResult] = loop.create_future()
        self._queue.append(_QueuedWrite(ops, fence, future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        """Commit every queued write in one transaction, then wake the writers."""
        self._flush_scheduled = False
        batch = [w for w in self._queue if not w.future.done()]  # done = cancelled
        self._queue = []
        if not batch:
            return
        for queued, outcome in zip(batch, self._commit(batch), strict=True):
            if isinstance(outcome, BaseException):
                queued.future.set_exception(outcome)
            else:
                queued.future.set_result(outcome)

    def _commit(self, batch: list[_QueuedWrite]) -> list[WriteResult | Exception]:
        """Either COMMIT with per-write outcomes, or fail every write of the batch."""
        batch_seqs: dict[str, int] = {}
        outcomes: list[WriteResult | Exception] = []
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            for queued in batch:
                outcomes.append(self._apply_in_savepoint(queued, batch_seqs))
            self._conn.execute("COMMIT")
        except Exception as exc:
            try:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the connection is broken; the first error is the one to report
            return [self._batch_failure(len(batch), exc) for _ in batch]
        self._next_seqs.update(batch_seqs)
        self._counters.transactions += 1
        self._checkpointer.dirty = True
        return outcomes

    def _batch_failure(self, size: int, exc: Exception) -> StoreError:
        error = StoreError(
            f"commit of {size} write(s) to sqlite store {str(self.path)!r} failed, "
            f"none applied: {exc}"
        )
        error.__cause__ = exc
        return error

    def _apply_in_savepoint(
        self, queued: _QueuedWrite, batch_seqs: dict[str, int]
    ) -> WriteResult | Exception:
        """Apply one write inside the batch; a refused write rolls back alone.

        ``batch_seqs`` holds the high water of logs appended to by earlier
        writes of this batch; it is updated only when this write succeeds,
        so a rolled-back append leaves no hole in the seq cache.
        """
        self._conn.execute("SAVEPOINT write")
        try:
            plan = plan_write(
                queued.ops,
                queued.fence,
                next_seq=lambda log: (
                    batch_seqs[log] if log in batch_seqs else self._committed_next_seq(log)
                ),
                record_state=self._record_state,
                newest_token=self._newest_token,
                floor=self._committed_floor,  # read inside the transaction: sees the batch
            )
            self._apply(plan)
        except ShardlineError as refused:
            self._undo_savepoint()
            return refused
        except (sqlite3.Error, UnicodeError, OverflowError) as exc:
            if not self._conn.in_transaction:
                raise  # SQLite abandoned the whole transaction: the batch fails
            self._undo_savepoint()
            error = StoreError(f"write to sqlite store {str(self.path)!r} failed: {exc}")
            error.__cause__ = exc
            return error
        self._conn.execute("RELEASE write")
        batch_seqs.update(plan.next_seqs)
        return plan.result()

    def _undo_savepoint(self) -> None:
        self._conn.execute("ROLLBACK TO write")
        self._conn.execute("RELEASE write")

    def _apply(self, plan: WritePlan) -> None:
        if plan.rows:
            self._conn.executemany(
                "INSERT INTO log_entries (log, seq, key, payload) VALUES (?, ?, ?, ?)", plan.rows
            )
        if plan.records:
            self._conn.executemany(
                _UPSERT_RECORD,
                [(key, state.value, state.version) for key, state in plan.records.items()],
            )
        for log, floor in plan.floors.items():
            self._conn.execute("DELETE FROM log_entries WHERE log = ? AND seq < ?", (log, floor))
            self._conn.execute(
                "INSERT INTO log_floors (log, floor) VALUES (?, ?) "
                "ON CONFLICT (log) DO UPDATE SET floor = excluded.floor", (log, floor))

    # -- leases -------------------------------------------------------------

    def _stored_lease(self, key: str) -> tuple[Lease | None, int]:
        """The last grant not released (maybe expired), and the newest token."""
        with self._failing_as_store_error(f"lease lookup of {key!r}"):
            row = self._conn.execute(
                "SELECT owner, token, expires_at FROM leases WHERE key = ?", (key,)
            ).fetchone()
        if row is None:
            return None, 0
        owner, token, expires_at = row
        return (None if owner is None else Lease(key, owner, token, expires_at)), token

    async def _acquire(self, key: str, owner: str, ttl: float, now: float) -> Lease | None:
        current, newest = self._stored_lease(key)
        lease = grant_lease(current, newest, key, owner, ttl, now)
        if lease is not None:
            self._commit_one(_UPSERT_LEASE, (key, owner, lease.token, lease.expires_at))
        return lease

    async def _release(self, key: str, owner: str, token: int, now: float) -> bool:
        current, _ = self._stored_lease(key)
        if current is None or not is_held(current, now):
            return False
        if (current.owner, current.token) != (owner, token):
            return False
        self._commit_one("UPDATE leases SET owner = NULL WHERE key = ?", (key,))
        return True

    async def _lease(self, key: str, now: float) -> Lease | None:
        current, _ = self._stored_lease(key)
        return current if is_held(current, now) else None

    async def _revoke(self, key: str, now: float) -> bool:
        current, _ = self._stored_lease(key)
        if not is_held(current, now):
            return False
        self._commit_one("UPDATE leases SET expires_at = ? WHERE key = ?", (now, key))
        return True

    async def _leases(self, prefix: str, now: float) -> list[Lease]:
        end = prefix_end(prefix)
        sql = (
            "SELECT key, owner, token, expires_at FROM leases "
            "WHERE key >= ? AND owner IS NOT NULL AND expires_at > ?"
        )
        params: tuple[object, ...] = (prefix, now)
        if end:
            sql, params = sql + " AND key < ?", (*params, end)
        with self._failing_as_store_error(f"lease scan of prefix {prefix!r}"):
            rows = self._conn.execute(sql + " ORDER BY key", params).fetchall()
        return [Lease(key, owner, token, expires_at) for key, owner, token, expires_at in rows]

    async def _size(self) -> StoreSize:
        files = [self.path, Path(f"{self.path}-wal")]
        return StoreSize(sum(f.stat().st_size for f in files if f.exists()),
                         "sqlite database file + WAL")

    async def _close(self) -> None:
        self._flush()  # queued writes commit now rather than fail
        self._checkpointer.close()
        try:
            with self._failing_as_store_error("close"):
                self._conn.close()  # the last connection: checkpoints and removes the WAL
        finally:
            os.close(self._lock_fd)
