"""``sqlite://``: the contract in one SQLite file, with group commit.

Durability: WAL journal. ``synchronous=NORMAL`` (the default) keeps every
acknowledged write through a crash or ``kill -9`` of the process;
``synchronous=FULL`` also through power loss, at an fsync per commit.

Group commit. Every ``write`` queued while no commit runs is committed by
one transaction, one SAVEPOINT per write so a refused write rolls back
alone while the rest of its batch commits. A write returns only after its
batch's COMMIT. At most one batch commits at a time; writes issued
meanwhile queue for the next.

Where the commits run. On the real clock a batch commits on a writer
thread of the store's own, with the write connection, while the event loop
goes on: ``sqlite3`` releases the GIL while SQLite works (and while the
inline checkpoint fsyncs), so that work uses a second core, and the loop
prepares the next batch meanwhile. Lease grants, renewals and releases (a
read, then a write) run on the same thread, after the batches ahead of
them, so they are serialized with every write exactly as before (fencing
still compares the token in the write's transaction). Reads run on the
loop with a read-only connection of their own: each sees what was
committed when it began, so a read never sees a write its caller has not
been told about. Under simulated time everything runs inline on the loop
with the one connection (no thread means no scheduling the simulator
cannot see, so a seed replays exactly); the outcomes are the same, only
the timing differs.

The file: schema, owner lock, background checkpoints: ``_sqlite_file``.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from runtime._errors import ShardlineError, StoreError
from runtime._simloop import is_simulated
from runtime.store._base import Store
from runtime.store._rules import (
    BatchPlan,
    RecordState,
    WritePlan,
    grant_lease,
    is_held,
    may_release,
    plan_batch,
    plan_write,
    prefix_end,
)
from runtime.store._sqlite_file import (
    WAL_PAGES,
    Checkpointer,
    Synchronous,
    open_file,
    open_reader,
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

T = TypeVar("T")

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




def open_sqlite(path: Path, *, synchronous: Synchronous, clock: Clock,
                wal_pages: int | None = None) -> SqliteStore:
    """Open (creating if absent) the store at ``path``; ``StoreError`` names path and cause.

    ``wal_pages`` (default ``WAL_PAGES``) bounds the WAL: a commit past it
    checkpoints inline, and the WAL file is cut back to it when it restarts.
    Opened on a real event loop, the store commits on a writer thread; opened
    under simulated time (or outside any loop), inline (module docstring).
    """
    conn, lock_fd = open_file(path, synchronous=synchronous, wal_pages=wal_pages or WAL_PAGES)
    reader = None
    if _on_real_loop():
        try:
            reader = open_reader(path)
        except StoreError:
            conn.close()
            os.close(lock_fd)
            raise
    return SqliteStore(conn, path, clock, lock_fd, reader)


def _on_real_loop() -> bool:
    try:
        return not is_simulated()
    except RuntimeError:  # no running loop
        return False


_KNOWN_RECORDS = 100_000
"""Records (and lease keys) whose state the writer remembers; past this it forgets them
all and reads them again as they are written."""

_KEYS_PER_SELECT = 500
"""Keys per ``SELECT ... IN (...)`` of ``get_many``: under SQLite's bound-variable
limit (999 before SQLite 3.32), and no single statement grows without bound."""


class SqliteStore(Store):
    """See the module docstring. ``reader`` given: commits on a writer thread and reads
    with ``reader``; ``None``: everything inline on the loop with ``conn``."""

    def __init__(self, conn: sqlite3.Connection, path: Path, clock: Clock, lock_fd: int,
                 reader: sqlite3.Connection | None = None) -> None:
        super().__init__(clock)
        self._conn = conn
        """The write connection: used by the writer thread only, when there is one."""
        self._reads = reader or conn
        self._reader = reader
        self._writer = (ThreadPoolExecutor(1, thread_name_prefix=f"sqlite writer {path.name}")
                        if reader is not None else None)
        self._lock_fd = lock_fd
        self._checkpointer = Checkpointer(path)
        self.path = path
        self._queue: list[_QueuedWrite] = []
        self._flush_scheduled = False
        self._committing: asyncio.Future[None] | None = None
        """Set while a batch commits on the writer thread."""
        self._next_seqs: dict[str, int] = {}
        """Committed high water per log, loaded on first use by the writer; appends never
        query it. Written only by whoever commits (the writer thread, or the loop inline)."""
        self._records: dict[str, RecordState] = {}
        """Committed records the writer knows: whether live (value ``b""``, else ``None``)
        and version; enough to decide a write (the store has one writer: the owner lock)."""
        self._tokens: dict[str, int] = {}
        """Newest lease token per key, as the writer knows it."""

    def __repr__(self) -> str:
        return f"<SqliteStore {str(self.path)!r}>"

    @contextmanager
    def _failing_as_store_error(self, action: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(f"{action} in sqlite store {str(self.path)!r} failed: {exc}") from exc

    async def _serialized(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` with the write connection, after every batch already committing:
        on the writer thread when there is one, else now."""
        if self._writer is None:
            return fn(*args)
        return await asyncio.wrap_future(self._writer.submit(fn, *args))

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
        """The writer's high water of ``log`` (cached; read inside its transaction)."""
        seq = self._next_seqs.get(log)
        if seq is None:
            seq = self._next_seqs[log] = _stored_next_seq(self._conn, log)
        return seq

    def _committed_floor(self, log: str) -> int:
        return _stored_floor(self._conn, log)

    def _known_record_state(self, key: str) -> RecordState | None:
        """The committed state of ``key`` as far as planning needs it (whether it is live,
        and its version): remembered from the writer's own commits, else read."""
        state = self._records.get(key)
        if state is None:
            state = self._record_state(key)
            if state is not None:
                self._records[key] = RecordState(None if state.value is None else b"",
                                                 state.version)
        return state

    def _record_state(self, key: str) -> RecordState | None:
        """Read inside the writer's transaction: sees the writes applied before it."""
        row = self._conn.execute(
            "SELECT value, version FROM records WHERE key = ?", (key,)
        ).fetchone()
        return None if row is None else RecordState(row[0], row[1])

    def _newest_token(self, key: str) -> int:
        """Tokens change only by grants, which this writer makes: remembered, else read."""
        token = self._tokens.get(key)
        if token is None:
            row = self._conn.execute("SELECT token FROM leases WHERE key = ?",
                                     (key,)).fetchone()
            token = 0 if row is None else int(row[0])
            if len(self._tokens) > _KNOWN_RECORDS:
                self._tokens.clear()
            self._tokens[key] = token
        return token

    async def _read(self, log: str, from_seq: int, limit: int) -> list[LogEntry]:
        with self._failing_as_store_error(f"read of log {log!r}"):
            rows = self._reads.execute(
                "SELECT seq, key, payload FROM log_entries WHERE log = ? AND seq >= ? "
                "ORDER BY seq LIMIT ?",
                (log, from_seq, limit),
            ).fetchall()
        return [LogEntry(seq, key, payload) for seq, key, payload in rows]

    async def _high_water(self, log: str) -> int:
        seq = self._next_seqs.get(log)  # a committed value, whoever cached it
        if seq is not None:
            return seq
        with self._failing_as_store_error(f"high water of log {log!r}"):
            return _stored_next_seq(self._reads, log)

    async def _floor(self, log: str) -> int:
        with self._failing_as_store_error(f"floor of log {log!r}"):
            return _stored_floor(self._reads, log)

    async def _get(self, key: str) -> Versioned | None:
        with self._failing_as_store_error(f"get of key {key!r}"):
            row = self._reads.execute(
                "SELECT value, version FROM records WHERE key = ?", (key,)).fetchone()
        if row is None or row[0] is None:
            return None
        return Versioned(row[0], row[1])

    async def _get_many(self, keys: list[str]) -> dict[str, Versioned]:
        found: dict[str, Versioned] = {}
        reads = self._reads
        several = len(keys) > _KEYS_PER_SELECT  # one read transaction: one point in time
        with self._failing_as_store_error(f"get of {len(keys)} keys"):
            if several:
                reads.execute("BEGIN")
            try:
                for start in range(0, len(keys), _KEYS_PER_SELECT):
                    chunk = keys[start : start + _KEYS_PER_SELECT]
                    rows = reads.execute(
                        "SELECT key, value, version FROM records WHERE value IS NOT NULL "
                        f"AND key IN ({','.join('?' * len(chunk))})",
                        chunk,
                    ).fetchall()
                    for key, value, version in rows:
                        found[key] = Versioned(value, version)
            finally:
                if several:
                    reads.execute("COMMIT")
        return found

    async def _scan(self, prefix: str) -> list[tuple[str, Versioned]]:
        end = prefix_end(prefix)
        sql = "SELECT key, value, version FROM records WHERE key >= ? AND value IS NOT NULL"
        params: tuple[str, ...] = (prefix,)
        if end:
            sql, params = sql + " AND key < ?", (prefix, end)
        with self._failing_as_store_error(f"scan of prefix {prefix!r}"):
            rows = self._reads.execute(sql + " ORDER BY key", params).fetchall()
        return [(key, Versioned(value, version)) for key, value, version in rows]

    # -- group commit -------------------------------------------------------

    async def _write(self, ops: list[WriteOp], fence: Fence | None) -> WriteResult:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[WriteResult] = loop.create_future()
        self._queue.append(_QueuedWrite(ops, fence, future))
        if not self._flush_scheduled and self._committing is None:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        """Commit every queued write in one transaction (inline, or handed to the writer
        thread), then wake the writers. While a batch commits, the next one waits: its
        commit starts when this one's ends."""
        self._flush_scheduled = False
        if self._committing is not None:
            return
        batch = [w for w in self._queue if not w.future.done()]  # done = cancelled
        self._queue = []
        if not batch:
            return
        if self._writer is None:
            _settle(batch, self._commit(batch))
            return
        loop = asyncio.get_running_loop()
        self._committing = loop.create_future()
        done = self._writer.submit(self._commit, batch)
        done.add_done_callback(
            lambda finished: loop.call_soon_threadsafe(self._committed, batch, finished))

    def _committed(self, batch: list[_QueuedWrite],
                   done: Future[list[WriteResult | Exception]]) -> None:
        """On the loop, once the writer thread finished ``batch``: settle it, go on."""
        committing, self._committing = self._committing, None
        try:
            outcomes = done.result()
        except Exception as exc:  # the thread could not run it at all
            outcomes = [self._batch_failure(len(batch), exc) for _ in batch]
        _settle(batch, outcomes)
        if committing is not None:
            committing.set_result(None)
        if self._queue and not self._flush_scheduled:
            self._flush()

    def _commit(self, batch: list[_QueuedWrite]) -> list[WriteResult | Exception]:
        """Either COMMIT with per-write outcomes, or fail every write of the batch.

        The batch is decided as a whole (``plan_batch``: a refused write
        contributes nothing) and applied with one statement per table. Should
        applying fail (a key SQLite cannot store, say), the batch is rolled back
        and applied again one write at a time, each in a SAVEPOINT, so only the
        write at fault fails.
        """
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                plan = plan_batch([(w.ops, w.fence) for w in batch],
                                  next_seq=self._committed_next_seq,
                                  record_state=self._known_record_state,
                                  newest_token=self._newest_token, floor=self._committed_floor)
                self._apply(plan)
                outcomes, batch_seqs, known = plan.outcomes, plan.next_seqs, plan.records
            except (sqlite3.Error, UnicodeError, OverflowError):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                conn.execute("BEGIN IMMEDIATE")
                batch_seqs, known = {}, {}
                outcomes = [self._apply_in_savepoint(queued, batch_seqs) for queued in batch]
                self._records.clear()  # known states are read again from the file
            conn.execute("COMMIT")
        except Exception as exc:
            try:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the connection is broken; the first error is the one to report
            return [self._batch_failure(len(batch), exc) for _ in batch]
        self._next_seqs.update(batch_seqs)
        if len(self._records) > _KNOWN_RECORDS:
            self._records.clear()
        for key, state in known.items():
            self._records[key] = RecordState(None if state.value is None else b"", state.version)
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

    def _apply(self, plan: WritePlan | BatchPlan) -> None:
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

    def _stored_lease(self, key: str, conn: sqlite3.Connection) -> tuple[Lease | None, int]:
        """The last grant not released (maybe expired), and the newest token."""
        with self._failing_as_store_error(f"lease lookup of {key!r}"):
            row = conn.execute(
                "SELECT owner, token, expires_at FROM leases WHERE key = ?", (key,)
            ).fetchone()
        if row is None:
            return None, 0
        owner, token, expires_at = row
        return (None if owner is None else Lease(key, owner, token, expires_at)), token

    # A lease change reads, decides and writes with the write connection, serialized
    # with the batches (``_serialized``), so nothing commits between its read and write.

    async def _acquire(self, key: str, owner: str, ttl: float, now: float) -> Lease | None:
        return await self._serialized(self._acquire_now, key, owner, ttl, now)

    def _acquire_now(self, key: str, owner: str, ttl: float, now: float) -> Lease | None:
        current, newest = self._stored_lease(key, self._conn)
        lease = grant_lease(current, newest, key, owner, ttl, now)
        if lease is not None:
            self._commit_one(_UPSERT_LEASE, (key, owner, lease.token, lease.expires_at))
            self._tokens[key] = lease.token
        return lease

    async def _release(self, key: str, owner: str, token: int, now: float) -> bool:
        return await self._serialized(self._release_now, key, owner, token, now)

    def _release_now(self, key: str, owner: str, token: int, now: float) -> bool:
        current, _ = self._stored_lease(key, self._conn)
        if not may_release(current, owner, token, now):
            return False
        self._commit_one("UPDATE leases SET owner = NULL WHERE key = ?", (key,))
        return True

    async def _lease(self, key: str, now: float) -> Lease | None:
        current, _ = self._stored_lease(key, self._reads)
        return current if is_held(current, now) else None

    async def _revoke(self, key: str, now: float) -> bool:
        return await self._serialized(self._revoke_now, key, now)

    def _revoke_now(self, key: str, now: float) -> bool:
        current, _ = self._stored_lease(key, self._conn)
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
            rows = self._reads.execute(sql + " ORDER BY key", params).fetchall()
        return [Lease(key, owner, token, expires_at) for key, owner, token, expires_at in rows]

    async def _size(self) -> StoreSize:
        files = [self.path, Path(f"{self.path}-wal")]
        return StoreSize(sum(f.stat().st_size for f in files if f.exists()),
                         "sqlite database file + WAL")

    async def _close(self) -> None:
        try:
            while self._queue or self._committing is not None:  # queued writes commit now
                if self._committing is None:
                    self._flush()
                if self._committing is not None:
                    await asyncio.shield(self._committing)
        finally:
            if self._writer is not None:
                self._writer.shutdown(wait=True)
            self._checkpointer.close()
            try:
                with self._failing_as_store_error("close"):
                    if self._reader is not None:
                        self._reader.close()
                    self._conn.close()  # the last connection: checkpoints, removes the WAL
            finally:
                os.close(self._lock_fd)


def _settle(batch: list[_QueuedWrite], outcomes: list[WriteResult | Exception]) -> None:
    """Wake each write of ``batch`` with its outcome (a cancelled one is left alone)."""
    for queued, outcome in zip(batch, outcomes, strict=True):
        if queued.future.done():
            continue
        if isinstance(outcome, BaseException):
            queued.future.set_exception(outcome)
        else:
            queued.future.set_result(outcome)


def _stored_next_seq(conn: sqlite3.Connection, log: str) -> int:
    """The high water of ``log`` as stored: past its last entry, or its floor."""
    (top,) = conn.execute("SELECT MAX(seq) FROM log_entries WHERE log = ?", (log,)).fetchone()
    return max(0 if top is None else top + 1, _stored_floor(conn, log))


def _stored_floor(conn: sqlite3.Connection, log: str) -> int:
    row = conn.execute("SELECT floor FROM log_floors WHERE log = ?", (log,)).fetchone()
    return 0 if row is None else int(row[0])
