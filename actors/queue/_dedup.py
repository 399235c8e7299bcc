"""A queue's dedup window on one server: the ids it has seen, and since when.

Ids are scoped per queue (as in SQS: one id in two queues is two
messages), so a server keeps one window per queue. Ids arrive in chunks
(one per journaled enqueue: one stamp, one journal entry), and a chunk is
what the window remembers in order: adding a chunk and pruning one are a
few C-level dict operations for all its ids, with no object per id. Stamps
come in (roughly) increasing order, so pruning takes chunks from the front
until the window's horizon.
"""

from __future__ import annotations

from collections import deque
from itertools import repeat


class DedupWindow:
    __slots__ = ("_chunks", "_seen", "window")

    def __init__(self, window: float) -> None:
        self.window = window
        self._seen: dict[str, float] = {}
        self._chunks: deque[tuple[float, int, list[str]]] = deque()
        """(stamp, journal entry, ids) per enqueue, in the order they were added."""

    def __contains__(self, ident: str) -> bool:
        return ident in self._seen

    def __len__(self) -> int:
        return len(self._seen)

    def none_of(self, ids: list[str]) -> bool:
        """Is none of ``ids`` in the window? (One C-level pass: an enqueue asks this for
        all its ids before looking at any one.)"""
        return self._seen.keys().isdisjoint(ids)

    def add(self, ids: list[str], stamp: float, journal_seq: int) -> None:
        """``ids`` were enqueued at ``stamp`` by journal entry ``journal_seq``."""
        if ids:
            self._seen.update(zip(ids, repeat(stamp)))  # no dict built to merge
            self._chunks.append((stamp, journal_seq, ids))

    def prune(self, at: float) -> None:
        """Forget the ids stamped before ``at`` minus the window (an id added again
        since keeps its later stamp)."""
        horizon = at - self.window
        chunks = self._chunks
        seen = self._seen
        while chunks and chunks[0][0] < horizon:
            stamp, _, ids = chunks.popleft()
            for ident in ids:
                if seen.get(ident) == stamp:
                    del seen[ident]

    def oldest_seq(self) -> int | None:
        """The journal entry of the oldest id still in the window (recovery needs it)."""
        return self._chunks[0][1] if self._chunks else None
