"""A queue's dedup window on one server: the ids it has seen, and since when.

Ids are scoped per queue (as in SQS: one id in two queues is two
messages), so a server keeps one window per queue. Ids arrive in chunks
(one per journaled enqueue: one stamp, one journal entry), and a chunk is
what the window remembers in order: adding a chunk and pruning one are a
few C-level set operations for all its ids, with no object per id. Stamps
come in (roughly) increasing order, so pruning takes chunks from the front
until the window's horizon; a chunk stamped earlier than the one before it
(a wall clock set back) takes that one's stamp, as it leaves with it anyway.

An id's stamp is that of the latest chunk that added it. Normally an id is
added only while it is out of the window (an enqueue drops the ids in it),
so its one chunk holds its stamp and the window keeps only a set of ids (a
set costs about half a dict per id, added or looked up). A chunk that adds
ids already in the window (a recovery replaying the journal: an id that
left the window and came back is in two entries) records their new stamp
in ``_renewed``, so pruning an older chunk keeps them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection
from itertools import repeat


class DedupWindow:
    __slots__ = ("_chunks", "_renewed", "_seen", "window")

    def __init__(self, window: float) -> None:
        self.window = window
        self._seen: set[str] = set()
        self._chunks: deque[tuple[float, int, list[str]]] = deque()
        """(stamp, journal entry, ids) per enqueue, in the order they were added."""
        self._renewed: dict[str, float] = {}
        """The stamp of each id added again while in the window (usually empty)."""

    def __contains__(self, ident: str) -> bool:
        return ident in self._seen

    def __len__(self) -> int:
        return len(self._seen)

    def none_of(self, ids: Collection[str]) -> bool:
        """Is none of ``ids`` in the window? (One C-level pass: an enqueue asks this for
        all its ids before looking at any one.)"""
        return self._seen.isdisjoint(ids)

    def add(self, ids: Collection[str], stamp: float, journal_seq: int) -> None:
        """``ids`` were enqueued at ``stamp`` by journal entry ``journal_seq``."""
        if not ids:
            return
        chunks = self._chunks
        if chunks and stamp < chunks[-1][0]:
            # A stamp earlier than the last chunk's (a wall clock set back): the chunk
            # is pruned after that one anyway, so give it that stamp. Stamps then never
            # decrease, and an id pruned with a chunk is never still in a later one.
            stamp = chunks[-1][0]
        seen = self._seen
        before = len(seen)
        seen.update(ids)  # set into set: the hashes are copied, no id is read
        if len(seen) - before != len(ids):
            # Some were in the window already: stamping every id of the chunk is
            # exact, as the chunk is the latest of each.
            self._renewed.update(zip(ids, repeat(stamp)))
        chunks.append((stamp, journal_seq, list(ids)))

    def prune(self, at: float) -> None:
        """Forget the ids stamped before ``at`` minus the window (an id added again
        since keeps its later stamp)."""
        horizon = at - self.window
        chunks = self._chunks
        seen = self._seen
        renewed = self._renewed
        while chunks and chunks[0][0] < horizon:
            stamp, _, ids = chunks.popleft()
            if renewed:
                ids = [ident for ident in ids if renewed.get(ident, stamp) == stamp]
                for ident in ids:
                    renewed.pop(ident, None)
            seen.difference_update(ids)

    def oldest_seq(self) -> int | None:
        """The journal entry of the oldest id still in the window (recovery needs it)."""
        return self._chunks[0][1] if self._chunks else None
