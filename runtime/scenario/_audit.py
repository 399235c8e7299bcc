"""What retention drops from the store, kept for a scenario's invariant checks.

A system truncates logs and deletes records as it runs (``[stream]`` and
``[log]`` retention). Its checks need everything from the start, so before
a truncating write the system hands what it is about to drop to an
``Audit``: log entries by log and seq, records by key (their last value).
The checks read the audit below each log's floor and the store from the
floor up (``read_whole_log``), and the audit for a record the store no
longer has.

Policy: an audit is optional (an embedding job without one truncates and
cannot be checked from seq 0; ``read_whole_log`` says so). ``FileAudit``
appends MessagePack frames to a file under the run's ``<out>/``, so a
scenario run keeps it beside its report and a rerun on the same store
reads the earlier runs' entries. An entry may be recorded twice (a
truncating write that was refused, then retried): the copies are equal,
keyed by log and seq.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from runtime._errors import StoreError
from runtime.store import LogEntry, Store

_PAGE = 10_000


class _Frame(msgspec.Struct, array_like=True):
    name: str
    """A log, or a record's key when ``seq`` is -1."""
    seq: int
    key: str
    payload: bytes


class Audit:
    """Dropped log entries and records, in memory."""

    def __init__(self) -> None:
        self._logs: dict[str, dict[int, LogEntry]] = {}
        self._records: dict[str, bytes] = {}

    def record_entries(self, log: str, entries: list[LogEntry]) -> None:
        kept = self._logs.setdefault(log, {})
        for entry in entries:
            kept[entry.seq] = entry

    def record_value(self, key: str, value: bytes) -> None:
        self._records[key] = value

    def entries(self, log: str) -> list[LogEntry]:
        """The recorded entries of ``log``, ascending by seq."""
        return sorted(self._logs.get(log, {}).values(), key=lambda e: e.seq)

    def value(self, key: str) -> bytes | None:
        """The last recorded value of a deleted record."""
        return self._records.get(key)


class FileAudit(Audit):
    """An ``Audit`` also appended to ``path`` (loaded from it when it exists)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        if path.exists():
            decoder = msgspec.msgpack.Decoder(list[_Frame])
            for frames in _split(path.read_bytes()):
                for f in decoder.decode(frames):
                    if f.seq < 0:
                        super().record_value(f.name, f.payload)
                    else:
                        super().record_entries(f.name, [LogEntry(f.seq, f.key, f.payload)])

    def record_entries(self, log: str, entries: list[LogEntry]) -> None:
        super().record_entries(log, entries)
        self._append([_Frame(log, e.seq, e.key, e.payload) for e in entries])

    def record_value(self, key: str, value: bytes) -> None:
        super().record_value(key, value)
        self._append([_Frame(key, -1, "", value)])

    def _append(self, frames: list[_Frame]) -> None:
        body = msgspec.msgpack.encode(frames)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as out:
            out.write(len(body).to_bytes(4, "big") + body)


def _split(data: bytes) -> list[bytes]:
    """The length-prefixed frames of an audit file (a torn last frame is dropped)."""
    frames = []
    at = 0
    while at + 4 <= len(data):
        size = int.from_bytes(data[at:at + 4], "big")
        if at + 4 + size > len(data):
            break
        frames.append(data[at + 4:at + 4 + size])
        at += 4 + size
    return frames


async def audit_before_truncating(store: Store, audit: Audit | None, log: str,
                                  floor: int, before_seq: int) -> None:
    """Hand the entries ``floor .. before_seq - 1`` of ``log`` to ``audit`` (if any)."""
    if audit is not None and before_seq > floor:
        audit.record_entries(log, await store.read(log, floor, before_seq - floor))


async def read_whole_log(store: Store, audit: Audit | None, log: str) -> list[LogEntry]:
    """Every entry of ``log`` from seq 0: the audit's below the floor, then the store's.

    ``StoreError`` names the log if the audit lacks some truncated entry.
    """
    floor = await store.floor(log)
    out = [e for e in (audit.entries(log) if audit is not None else []) if e.seq < floor]
    if [e.seq for e in out] != list(range(floor)):
        raise StoreError(f"{log}: truncated below seq {floor} and the audit holds "
                         f"{len(out)} of those entries")
    while True:
        page = await store.read(log, len(out), _PAGE)
        out.extend(page)
        if len(page) < _PAGE:
            return out
