"""A queue server's dedup window: the ids it has seen, per queue, and since when.

An id is scoped by its queue (as in SQS: one id in two queues is two
messages). Entries are atomic (``queue\\0id`` -> stamp, and an order of
(stamp, scoped id, journal seq) tuples), so the garbage collector can leave
these large structures alone. Stamps come in (roughly) increasing order, so
pruning takes entries from the front until the window's horizon.
"""

from __future__ import annotations

from collections import deque


class DedupWindow:
    __slots__ = ("_order", "_seen", "window")

    def __init__(self, window: float) -> None:
        self.window = window
        self._seen: dict[str, float] = {}
        self._order: deque[tuple[float, str, int]] = deque()

    @staticmethod
    def scope(queue: str) -> str:
        """The prefix that scopes an id to ``queue`` (prefix + id is the entry's key)."""
        return queue + "\x00"

    def __contains__(self, scoped: str) -> bool:
        return scoped in self._seen

    def add(self, scoped: str, stamp: float, journal_seq: int) -> None:
        """``scoped`` was enqueued at ``stamp`` by journal entry ``journal_seq``."""
        self._seen[scoped] = stamp
        self._order.append((stamp, scoped, journal_seq))

    def prune(self, at: float) -> None:
        """Forget the ids stamped before ``at`` minus the window."""
        horizon = at - self.window
        order = self._order
        seen = self._seen
        while order and order[0][0] < horizon:
            stamp, scoped, _ = order.popleft()
            if seen.get(scoped) == stamp:
                del seen[scoped]

    def oldest_seq(self) -> int | None:
        """The journal entry of the oldest id still in the window (recovery needs it)."""
        return self._order[0][2] if self._order else None
