"""The file behind ``sqlite://``: schema, ownership, connections, background checkpoints.

``open_file`` opens (creating if absent) a Shardline store file and returns
its write connection with the owner lock held; ``open_reader`` a second,
read-only connection to it. A file that is not a SQLite database, or is one
that some other program owns, is refused and left untouched
(``application_id`` marks ours).

One owner per file: the store holds an exclusive ``flock`` on a sidecar
``<file>-lock``, so a second store on the same file (in any process) fails
to open instead of silently breaking the per-log seq cache. The lock dies
with the process. (Not SQLite's own exclusive locking mode: that would shut
out the checkpointer's and the reader's connections.)

Checkpoints run on a background thread (``Checkpointer``) with a
connection of its own, not inside a COMMIT of the writer: copying WAL
pages back into a large database and fsyncing it took 3-4 ms, which was the
whole of the p99.9 of a read woken by an append. A PASSIVE checkpoint never
blocks the writer, and it changes where pages live, not what any read sees,
so simulated runs stay deterministic. A COMMIT still checkpoints inline past
``WAL_PAGES`` (see there).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from pathlib import Path
from typing import Literal

from runtime._errors import StoreError

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

WAL_PAGES = 4096
"""WAL pages after which a COMMIT checkpoints inline anyway (``wal_pages`` of the URL).
Under writes without pause the background checkpoint never catches the WAL's end, so
the WAL could never restart; the inline one can (most pages are already copied, so it
is short)."""

BUSY_TIMEOUT = 5.0
"""Seconds a statement waits on a lock. The writer is the only connection that writes;
a PASSIVE checkpoint and a reader take no lock it waits for: this is a safety margin."""


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


def open_file(path: Path, *, synchronous: Synchronous,
              wal_pages: int) -> tuple[sqlite3.Connection, int]:
    """(write connection, owner lock fd) of the store file at ``path``, created if absent;
    ``StoreError`` names path and cause. The connection may be handed to another thread
    (one thread at a time)."""
    if path.is_dir():
        raise StoreError(f"cannot open sqlite store {str(path)!r}: it is a directory")
    if not path.parent.is_dir():
        raise StoreError(
            f"cannot open sqlite store {str(path)!r}: "
            f"parent directory {str(path.parent)!r} does not exist"
        )
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT,
                               check_same_thread=False)
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
    return conn, lock_fd


def open_reader(path: Path) -> sqlite3.Connection:
    """A read-only connection to the (already opened) store file: each statement reads
    what was committed when it began (WAL), never a write still in its transaction."""
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT)
        conn.execute("PRAGMA query_only = ON")
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open sqlite store {str(path)!r}: reader: {exc}") from exc
    return conn


class Checkpointer:
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
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT)
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
