"""The LogServer's read cache: recent blocks of the log, kept in memory.

Sessions of one log mostly read the same records at about the same time,
so each block is read from the store once (or kept from the append) and
served to every session from memory. A cached block always holds its
entries from the block start, contiguously, up to the log's high water; the
server is the log's only writer, so appends extend the tail block in place.
Least recently used blocks are dropped past ``capacity`` records. A block
whose start retention has truncated is not cached: what is left of it is
read from the store as asked.
"""

from __future__ import annotations

from collections import OrderedDict

from runtime import LogTruncated
from runtime.store import LogEntry, Store

BLOCK = 1024


class EntryCache:
    def __init__(self, log: str, capacity: int) -> None:
        self.log = log
        self.max_blocks = max(2, capacity // BLOCK)
        self._blocks: OrderedDict[int, list[LogEntry]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def appended(self, first_seq: int, entries: list[LogEntry]) -> None:
        """Record entries just appended at ``first_seq`` (they are durable)."""
        seq = first_seq
        index = 0
        while index < len(entries):
            block, offset = divmod(seq, BLOCK)
            take = min(BLOCK - offset, len(entries) - index)
            cached = self._blocks.get(block)
            if cached is not None and len(cached) == offset:
                cached.extend(entries[index:index + take])
            elif offset == 0:
                self._put(block, entries[index:index + take])
            seq += take
            index += take

    async def read(self, store: Store, first: int, count: int) -> list[LogEntry]:
        """Entries ``first .. first + count - 1``; the caller knows they exist."""
        out: list[LogEntry] = []
        seq = first
        end = first + count
        while seq < end:
            block, offset = divmod(seq, BLOCK)
            entries = self._blocks.get(block)
            want = min(BLOCK - offset, end - seq)
            if entries is None or len(entries) < offset + want:
                self.misses += 1
                try:
                    entries = await store.read(self.log, block * BLOCK, BLOCK)
                except LogTruncated:  # the block's start is gone; the rest is not cached
                    entries = await store.read(self.log, seq, want)
                    offset = 0
                if len(entries) < offset + want:
                    raise LookupError(
                        f"log {self.log!r} holds {block * BLOCK + len(entries)} entries; "
                        f"seq {seq + want - 1} was expected to exist")
                if entries[0].seq == block * BLOCK:
                    self._put(block, entries)
            else:
                self.hits += 1
                self._blocks.move_to_end(block)
            out.extend(entries[offset:offset + want])
            seq += want
        return out

    def _put(self, block: int, entries: list[LogEntry]) -> None:
        self._blocks[block] = entries
        self._blocks.move_to_end(block)
        while len(self._blocks) > self.max_blocks:
            self._blocks.popitem(last=False)
