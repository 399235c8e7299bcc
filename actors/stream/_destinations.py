"""Destinations write batches *by batch id* (or by sequence), which makes replay harmless.

- ``dir://PATH``: one JSON file per batch, named by batch id, written to a
  temporary name, fsynced and renamed (then the directory is fsynced), so a
  reader sees a whole batch or none, and a repeat overwrites identically.
  Concurrent deliveries share directory fsyncs (group commit): a delivery
  returns once a directory fsync that began after its rename has finished.
- ``append://PATH``: one append-only file per partition, a line per batch;
  a batch whose range the file already holds is not appended again
  (``_append.py``).
- ``sqlite:///PATH``: a table keyed by batch id (``INSERT OR REPLACE``).
- ``callable:pkg.mod:fn``: the user's ``deliver(batch)``, sync or async; it
  may be called again with the same batch id and records after a crash.

On the real clock file and database writes run in threads (``_offload.py``)
so every partition can fsync at once; under simulation they run inline so a
seed replays exactly.
"""

from __future__ import annotations

import inspect
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import msgspec

from actors.stream._append import AppendDestination
from actors.stream._offload import Offloaded, make_directory
from actors.stream._records import Batch
from runtime._callables import resolve_callable
from runtime._errors import ScenarioError

_encode = msgspec.json.Encoder().encode
_decode_batch = msgspec.json.Decoder(Batch).decode


class Destination(Protocol):
    """Where processed batches go. ``deliver`` must be idempotent by batch id."""

    async def deliver(self, batch: Batch) -> None: ...

    async def close(self) -> None: ...


class _DirectorySync:
    """Directory fsyncs shared by concurrent renames (group commit, as for a log).

    ``renamed`` hands each rename a ticket; ``sync(ticket)`` returns once a
    directory fsync that began after that rename has finished: it runs one
    itself, or finds that one which covers it finished while it waited.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._syncing = threading.Lock()
        self._counting = threading.Lock()
        self._renames = 0
        self._synced = 0  # renames covered by a finished fsync (under _syncing)

    def renamed(self) -> int:
        with self._counting:
            self._renames += 1
            return self._renames

    def sync(self, ticket: int) -> None:
        with self._syncing:
            if self._synced >= ticket:
                return
            with self._counting:
                covered = self._renames
            dir_fd = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
            self._synced = covered


class DirectoryDestination(Offloaded):
    def __init__(self, path: Path, *, threaded: bool) -> None:
        super().__init__(threaded)
        self.path = path
        self._directory = _DirectorySync(path)
        make_directory(path, f"dir://{path}")

    def _write(self, batch: Batch) -> None:
        final = self.path / f"{batch.batch_id}.json"
        temp = self.path / f".{batch.batch_id}.{threading.get_ident()}.tmp"
        with open(temp, "wb") as handle:
            handle.write(_encode(batch))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, final)
        self._directory.sync(self._directory.renamed())

    def batches(self) -> Iterator[Batch]:
        for file in sorted(self.path.glob("*.json")):
            yield _decode_batch(file.read_bytes())

    async def close(self) -> None:
        self._shutdown()


class SqliteDestination(Offloaded):
    def __init__(self, path: Path, *, threaded: bool) -> None:
        super().__init__(threaded)
        self.path = path
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS batches (batch_id TEXT PRIMARY KEY, "
                "partition INTEGER NOT NULL, first_seq INTEGER NOT NULL, "
                "last_seq INTEGER NOT NULL, records BLOB NOT NULL)"
            )
        except (sqlite3.Error, OSError) as exc:
            raise ScenarioError(f"destination sqlite:///{path}: cannot open: {exc}") from exc

    def _write(self, batch: Batch) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO batches VALUES (?, ?, ?, ?, ?)",
                (batch.batch_id, batch.partition, batch.first_seq, batch.last_seq,
                 _encode(batch)),
            )

    def batches(self) -> Iterator[Batch]:
        with self._lock:
            rows = self._db.execute("SELECT records FROM batches ORDER BY batch_id").fetchall()
        for (blob,) in rows:
            yield _decode_batch(blob)

    async def close(self) -> None:
        self._shutdown()
        with self._lock:
            self._db.close()


class CallableDestination:
    def __init__(self, fn: Callable[[Batch], object]) -> None:
        self._fn = fn

    async def deliver(self, batch: Batch) -> None:
        result = self._fn(batch)
        if inspect.isawaitable(result):
            await result

    async def close(self) -> None:
        return None


def _parse_destination(url: str) -> tuple[str, str]:
    """(kind, rest) of a destination URL; ``ScenarioError`` names it and the accepted forms."""
    for prefix, kind, form in (("dir://", "dir", "dir://PATH"),
                               ("append://", "append", "append://PATH"),
                               ("sqlite:///", "sqlite", "sqlite:///PATH"),
                               ("callable:", "callable", "callable:pkg.mod:fn")):
        if url.startswith(prefix):
            rest = url.removeprefix(prefix)
            if not rest:
                raise ScenarioError(f"destination {url!r}: expected {form}")
            return kind, rest
    raise ScenarioError(
        f"destination {url!r}: expected dir://PATH, append://PATH, sqlite:///PATH or "
        "callable:pkg.mod:fn"
    )


def destination_problem(url: str) -> str | None:
    """What is wrong with a destination URL, creating nothing (``shardline validate``).

    A ``callable:`` destination is imported, so a typo in the function's
    name is found before a run starts.
    """
    try:
        kind, rest = _parse_destination(url)
        if kind == "callable":
            resolve_callable(rest, what="destination")
    except ScenarioError as exc:
        return str(exc)
    return None


def open_destination(url: str, *, threaded: bool) -> Destination:
    """Open the destination a URL names; ``ScenarioError`` names it and the accepted forms."""
    kind, rest = _parse_destination(url)
    if kind == "dir":
        return DirectoryDestination(Path(rest), threaded=threaded)
    if kind == "append":
        return AppendDestination(Path(rest), threaded=threaded)
    if kind == "sqlite":
        return SqliteDestination(Path(rest), threaded=threaded)
    return CallableDestination(resolve_callable(rest, what="destination"))
