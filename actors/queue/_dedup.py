"""A queue server's dedup window: the ids it has seen, per queue, and since when.

An id is scoped by its queue (as in SQS: one id in two queues is two
messages). Entries are atomic (``queue\\0id`` -> stamp, and the order in
three parallel columns), so no object is made per id for the garbage
collector to walk. Stamps come in (roughly) increasing order, so
pruning takes entries from the front until the window's horizon.
"""

from __future__ import annotations

from collections import deque


class DedupWindow:
    __slots__ = ("_ids", "_seen", "_seqs", "_stamps", "window")

    def __init__(self, window: float) -> None:
        self.window = window
        self._seen: dict[str, float] = {}
        self._stamps: deque[float] = deque()
        self._ids: deque[str] = deque()
        self._seqs: deque[int] = deque()

    @staticmethod
    def scope(queue: str) -> str:
        """The prefix that scopes an id to ``queue`` (prefix + id is the entry's key)."""
        return queue + "\x00"

    def __contains__(self, scoped: str) -> bool:
        return scoped in self._seen

    def add(self, scoped: str, stamp: float, journal_seq: int) -> None:
        """``scoped`` was enqueued at ``stamp`` by journal entry ``journal_seq``."""
        self._seen[scoped] = stamp
        self._stamps.append(stamp)
        self._ids.append(scoped)
        self._seqs.append(journal_seq)

    def prune(self, at: float) -> None:
        """Forget the ids stamped before ``at`` minus the window."""
        horizon = at - self.window
        stamps, ids, seqs = self._stamps, self._ids, self._seqs
        seen = self._seen
        while stamps and stamps[0] < horizon:
            stamp = stamps.popleft()
            scoped = ids.popleft()
            seqs.popleft()
            if seen.get(scoped) == stamp:
                del seen[scoped]

    def oldest_seq(self) -> int | None:
        """The journal entry of the oldest id still in the window (recovery needs it)."""
        return self._seqs[0] if self._seqs else None
