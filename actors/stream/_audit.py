"""What retention drops from a stream's logs, kept for the invariant checks.

A partition truncates its record and commit logs behind the committed
checkpoint once they are older than ``retention``. The checks
(``_checks``) need every entry from seq 0, so before a truncating write
the partition hands the entries it is about to drop to the job's
``StreamAudit``, and the checks read the audit below each log's floor and
the store from the floor up.

Policy: an audit is optional (an embedding job without one truncates and
cannot be checked from seq 0; its checks say so). ``FileAudit`` appends
MessagePack frames to a file under the run's ``<out>/``, so a scenario run
keeps it beside its report, and a rerun on the same store reads the
earlier runs' entries. Entries may be recorded twice (a truncating write
that was refused, then retried): they are identical, keyed by log and seq.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from runtime.store import LogEntry


class _Frame(msgspec.Struct, array_like=True):
    log: str
    seq: int
    key: str
    payload: bytes


class StreamAudit:
    """Dropped entries by log and seq, in memory."""

    def __init__(self) -> None:
        self._logs: dict[str, dict[int, LogEntry]] = {}

    def record(self, log: str, entries: list[LogEntry]) -> None:
        kept = self._logs.setdefault(log, {})
        for entry in entries:
            kept[entry.seq] = entry

    def entries(self, log: str) -> list[LogEntry]:
        """The recorded entries of ``log``, ascending by seq."""
        return sorted(self._logs.get(log, {}).values(), key=lambda e: e.seq)


class FileAudit(StreamAudit):
    """A ``StreamAudit`` also appended to ``path`` (loaded from it when it exists)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        if path.exists():
            decoder = msgspec.msgpack.Decoder(list[_Frame])
            for frames in _split(path.read_bytes()):
                for f in decoder.decode(frames):
                    super().record(f.log, [LogEntry(f.seq, f.key, f.payload)])

    def record(self, log: str, entries: list[LogEntry]) -> None:
        super().record(log, entries)
        body = msgspec.msgpack.encode([_Frame(log, e.seq, e.key, e.payload) for e in entries])
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
