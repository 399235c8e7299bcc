"""Records of one partition read ahead of its checkpoint, handed out as batches.

The worker holding a partition's lease reads the partition's log once,
a few chunks at a time, and keeps what it read here: the next batch is cut
from this buffer instead of a fresh read and decode per batch.

A batch is at most ``limit`` records and may start or end inside a chunk
(``batch_size`` is a cap, whatever size the producer's chunks have). It is
named by its sequence range and by the chunks that hold it
(``first_chunk..last_chunk``, the first holding ``first_seq``, the last
``last_seq``), so a replay reads exactly those chunks and slices the same
records out of them: chunks never change once appended.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import msgspec

from actors.stream._records import Chunk
from runtime import ShardlineError
from runtime.store import LogEntry

_decode_chunk = msgspec.msgpack.Decoder(Chunk).decode


@dataclass(frozen=True, slots=True)
class Slice:
    """Records ``first_seq..last_seq`` of a partition, as columns, and where they lie.

    ``next_chunk`` is the chunk holding ``last_seq + 1``: ``last_chunk`` when
    the slice ends inside it, ``last_chunk + 1`` when it ends with it.
    """

    first_seq: int
    last_seq: int
    first_chunk: int
    last_chunk: int
    next_chunk: int
    keys: list[str]
    payloads: list[bytes]


class ChunkBuffer:
    """Decoded chunks from the one holding ``next_seq`` on; see the module docstring."""

    def __init__(self, log: str, next_chunk: int, next_seq: int) -> None:
        self.log = log
        self.next_chunk = next_chunk
        self.next_seq = next_seq
        self.read_upto = next_chunk
        """The next chunk index to read from the store."""
        self.buffered = 0
        """Records held at or after ``next_seq``."""
        self.record_bytes = 0.0
        """Stored bytes per record of the last chunk read (its encoded size / records)."""
        self.store_ahead = False
        """The last store read filled its limit: the log held more chunks than it took."""
        self._chunks: deque[Chunk] = deque()

    def add(self, entries: list[LogEntry]) -> None:
        """Append the log entries read from ``read_upto`` on (in order, no gap)."""
        for entry in entries:
            if entry.seq != self.read_upto:
                raise ShardlineError(f"{self.log}: read chunk {entry.seq}, "
                                     f"expected chunk {self.read_upto}")
            self.add_chunk(_decode_chunk(entry.payload), len(entry.payload))

    def add_chunk(self, chunk: Chunk, stored_bytes: int) -> None:
        """Append chunk ``read_upto`` (decoded; ``stored_bytes`` is its encoded size)."""
        size = len(chunk.keys)
        if size:
            self.record_bytes = stored_bytes / size
        if not self._chunks:  # the first chunk holds next_seq
            end = chunk.first_seq + size
            if not chunk.first_seq <= self.next_seq <= end:
                raise ShardlineError(
                    f"{self.log}: chunk {self.read_upto} holds seqs {chunk.first_seq}.."
                    f"{end - 1}, the checkpoint is at seq {self.next_seq}")
            self.buffered += end - self.next_seq
        else:
            last = self._chunks[-1]
            if chunk.first_seq != last.first_seq + len(last.keys):
                raise ShardlineError(f"{self.log}: chunk {self.read_upto} starts at seq "
                                     f"{chunk.first_seq}, after seq "
                                     f"{last.first_seq + len(last.keys) - 1}")
            self.buffered += size
        self._chunks.append(chunk)
        self.read_upto += 1

    def fill_target(self, batch_size: int, max_bytes: int) -> int:
        """Records to read ahead for one batch: ``batch_size``, or with ``max_bytes`` about
        ``max_bytes`` of stored records once a chunk told their size (reading stops where
        the log ends, so a partition that keeps up is not held back)."""
        if not max_bytes or not self.record_bytes:
            return batch_size
        return max(batch_size, int(max_bytes / self.record_bytes))

    def batch_limit(self, batch_size: int, max_bytes: int) -> int:
        """Records the next batch may hold: ``batch_size``, or when more than that is
        buffered (a backlog) and ``max_bytes`` is set, up to about ``max_bytes`` of
        stored records (never less than ``batch_size``, never more than buffered)."""
        if not max_bytes or self.buffered <= batch_size or not self.record_bytes:
            return batch_size
        return max(batch_size, min(self.buffered, int(max_bytes / self.record_bytes)))

    def take(self, limit: int) -> Slice | None:
        """Cut the next at most ``limit`` records (``None`` when none is buffered)."""
        if self.buffered == 0 or limit < 1:
            return None
        chunks = self._chunks
        first_seq = self.next_seq
        first_chunk = self.next_chunk
        keys: list[str] = []
        payloads: list[bytes] = []
        wanted = min(limit, self.buffered)
        last_chunk = first_chunk
        while wanted:
            chunk = chunks[0]
            last_chunk = self.next_chunk
            start = self.next_seq - chunk.first_seq
            size = len(chunk.keys)
            stop = min(size, start + wanted)
            if start == 0 and stop == size and not keys:  # a whole chunk: no copy
                keys, payloads = chunk.keys, chunk.payloads
            else:
                keys = keys + chunk.keys[start:stop]
                payloads = payloads + chunk.payloads[start:stop]
            wanted -= stop - start
            self.buffered -= stop - start
            self.next_seq = chunk.first_seq + stop
            if stop == size:
                chunks.popleft()
                self.next_chunk += 1
        return Slice(first_seq, self.next_seq - 1, first_chunk, last_chunk,
                     self.next_chunk, keys, payloads)


class RecentChunks:
    """Chunks just appended in this process, handed to the worker that reads them next.

    The partition actor puts each chunk here once its append committed; a
    worker reading ahead takes it from here instead of reading the store and
    decoding it again (chunks never change once appended, so the two are the
    same records). A chunk missing here (another process appended it, or it
    was evicted) is read from the store as before. At most ``max_bytes`` of
    stored chunks are kept, over all partitions: the oldest goes first.
    """

    def __init__(self, max_bytes: int = 64 << 20) -> None:
        self.max_bytes = max_bytes
        self.held_bytes = 0
        self._chunks: dict[tuple[str, int], tuple[Chunk, int]] = {}

    def put(self, log: str, seq: int, chunk: Chunk, stored_bytes: int) -> None:
        self._chunks[(log, seq)] = (chunk, stored_bytes)
        self.held_bytes += stored_bytes
        chunks = self._chunks
        while self.held_bytes > self.max_bytes and chunks:
            oldest = next(iter(chunks))  # dicts keep insertion order
            self.held_bytes -= chunks.pop(oldest)[1]

    def take(self, log: str, seq: int) -> tuple[Chunk, int] | None:
        """Chunk ``seq`` of ``log`` with its stored size, once (``None`` when not here)."""
        found = self._chunks.pop((log, seq), None)
        if found is not None:
            self.held_bytes -= found[1]
        return found
