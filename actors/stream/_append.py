"""``append://PATH``: one append-only file per partition, exactly once by sequence.

Each batch is one line (the ``Batch`` as JSON) appended to
``PATH/<stream>-pNNN.jsonl`` and fdatasynced before ``deliver`` returns, as a
log-structured sink does; no file is created per batch (on this kind of
machine creating a file costs ~300 µs of kernel time, an append ~100 µs).

Why a repeat changes nothing: a partition's batches reach the destination in
sequence order, one at a time, each naming its range ``first_seq..last_seq``.
The file remembers the last range it holds (read back from its last line
when first used), so a batch that ends at or below it is a repeat — a replay
after a crash, or a worker's late delivery after its successor went on — and
is not appended again (the file is synced, so what is already there is
durable before the repeat returns). A line cut short by a crash mid-append is
truncated away before the next append. Readers see whole lines; the last
line of a file may be partial only until the next delivery to it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import msgspec

from actors.stream._offload import Offloaded, make_directory
from actors.stream._records import Batch
from runtime import ShardlineError

_encode = msgspec.json.Encoder().encode
_decode_batch = msgspec.json.Decoder(Batch).decode
_TAIL_BLOCK = 1 << 16


class _PartitionFile:
    """One partition's file: its descriptor, size and last range, under a lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        created = not path.exists()
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        if created:  # the new name must survive a power loss too
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        self.size, self.last_seq = self._recover()

    def _recover(self) -> tuple[int, int]:
        """(size of the whole lines, last seq they hold); cuts a partial last line."""
        size = os.fstat(self.fd).st_size
        newline = self._last_newline(size)
        whole = newline + 1
        if whole < size:
            os.ftruncate(self.fd, whole)
            os.fdatasync(self.fd)
        if newline < 0:
            return 0, -1
        line_start = self._last_newline(newline) + 1
        last = _decode_batch(os.pread(self.fd, newline - line_start, line_start))
        return whole, last.last_seq

    def _last_newline(self, end: int) -> int:
        """Offset of the last newline before ``end``, or -1 (reads backwards in blocks)."""
        while end > 0:
            start = max(0, end - _TAIL_BLOCK)
            found = os.pread(self.fd, end - start, start).rfind(b"\n")
            if found >= 0:
                return start + found
            end = start
        return -1

    def append(self, batch: Batch) -> None:
        with self.lock:
            if batch.last_seq <= self.last_seq:  # a repeat: already here
                os.fdatasync(self.fd)
                return
            if batch.first_seq <= self.last_seq:
                raise ShardlineError(
                    f"{self.path}: batch {batch.batch_id} overlaps seqs up to {self.last_seq}")
            line = _encode(batch) + b"\n"
            written = os.write(self.fd, line)
            if written != len(line):
                os.ftruncate(self.fd, self.size)
                raise OSError(f"{self.path}: short write ({written} of {len(line)} bytes)")
            os.fdatasync(self.fd)
            self.size += written
            self.last_seq = batch.last_seq

    def close(self) -> None:
        os.close(self.fd)


class AppendDestination(Offloaded):
    """Batches appended to one file per partition (see the module docstring)."""

    def __init__(self, path: Path, *, threaded: bool) -> None:
        super().__init__(threaded)
        self.path = path
        self._files: dict[str, _PartitionFile] = {}
        self._opening = threading.Lock()
        make_directory(path, f"append://{path}")

    def _file(self, batch: Batch) -> _PartitionFile:
        name = batch.batch_id.rsplit("-", 2)[0]  # "<stream>-pNNN", as batch_id() makes it
        with self._opening:
            found = self._files.get(name)
            if found is None:
                found = self._files[name] = _PartitionFile(self.path / f"{name}.jsonl")
            return found

    def _write(self, batch: Batch) -> None:
        self._file(batch).append(batch)

    def batches(self) -> Iterator[Batch]:
        """Every batch of every partition file, whole lines only."""
        for file in sorted(self.path.glob("*.jsonl")):
            data = file.read_bytes()
            for line in data[:data.rfind(b"\n") + 1].splitlines():
                yield _decode_batch(line)

    async def close(self) -> None:
        self._shutdown()
        with self._opening:
            for file in self._files.values():
                file.close()
            self._files.clear()
