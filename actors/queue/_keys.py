"""What a queue server holds per queue and per strict-order key (no I/O, no policy).

A key holds its messages in offset (enqueue) order; at most one batch of
them is out at a time, always a prefix of the key (``flight`` messages from
the head). A queue keeps two indexes of the keys that could go out:
``ready`` (no batch out, something pending: a hot key with a long backlog
occupies one slot) and, on a windowed queue, ``full`` (ready and holding a
whole window). Both are lazy: an entry whose key is no longer eligible is
skipped when popped, and a key re-enters when it becomes eligible again.
"""

from __future__ import annotations

from collections import deque

import msgspec

from actors.queue._messages import QueuedMessage, WindowPolicy


class Held(msgspec.Struct, gc=False):
    """A stored message and how often it was handed out (untracked by the garbage
    collector, as ``QueuedMessage``: a server holds one per message)."""

    message: QueuedMessage
    offset: int
    at: float
    journal_seq: int
    receives: int = 0


class KeyState:
    """One strict-order key of one queue."""

    __slots__ = ("attempt", "deadline", "flight", "in_full", "name", "pending", "pinned",
                 "queued")

    def __init__(self, name: str) -> None:
        self.name = name
        self.pending: deque[Held] = deque()
        self.flight = 0
        """Messages out (the first ``flight`` of ``pending``), 0 when none is."""
        self.attempt = 0
        """The delivery number of the batch out (its head's receives)."""
        self.deadline = 0.0
        self.pinned = 0
        """On a windowed queue: the size of the window handed out and not yet settled,
        so it goes out again with the same members."""
        self.queued = False
        self.in_full = False

    @property
    def deliverable(self) -> bool:
        return not self.flight and bool(self.pending)

    def find(self, offset: int) -> Held | None:
        """The held message at ``offset`` (among the first few; None if settled)."""
        for held in self.pending:
            if held.offset == offset:
                return held
            if held.offset > offset:
                return None
        return None


class QueueState:
    """One queue on one server: its keys, the ready indexes, and its counts."""

    __slots__ = ("dead", "full", "held", "in_flight", "keys", "name", "ready", "sealed",
                 "window")

    def __init__(self, name: str, window: WindowPolicy | None) -> None:
        self.name = name
        self.window = window
        self.keys: dict[str, KeyState] = {}
        self.ready: deque[KeyState] = deque()
        self.full: deque[KeyState] = deque()
        self.sealed = False
        self.held = 0
        self.in_flight = 0
        self.dead = 0

    def key(self, name: str) -> KeyState:
        k = self.keys.get(name)
        if k is None:
            k = self.keys[name] = KeyState(name)
        return k

    def whole(self, k: KeyState) -> bool:
        """Does ``k`` hold a whole window (or one that must go out again as it was)?"""
        window = self.window
        return window is not None and (bool(k.pinned) or len(k.pending) >= window.size)

    def make_ready(self, k: KeyState) -> None:
        if not k.deliverable:
            return
        if not k.queued:
            k.queued = True
            self.ready.append(k)
        if not k.in_full and self.whole(k):
            k.in_full = True
            self.full.append(k)

    def forget_idle(self) -> None:
        """Drop the keys holding nothing (kept until now: a key often comes back soon).
        Stale index entries of a dropped key are skipped, as any stale entry is."""
        idle = [name for name, k in self.keys.items() if not k.pending]
        for name in idle:
            del self.keys[name]

    def batch_size(self, k: KeyState, per_key: int) -> int:
        """How many of ``k``'s messages go out in its next batch."""
        if k.pinned:
            return k.pinned
        limit = self.window.size if self.window is not None else per_key
        return min(limit, len(k.pending))

    def choose(self, at: float, budget: int, per_key: int) -> list[tuple[KeyState, int]]:
        """Pop the keys to hand out from the ready indexes, with their batch sizes (the
        one change planning makes: they are only indexes, recovery rebuilds them, and a
        chosen key is out until its batch is settled or expires, which re-adds it)."""
        chosen: list[tuple[KeyState, int]] = []
        window = self.window
        if window is None:
            ready = self.ready
            pop = ready.popleft
            add = chosen.append
            while ready and budget > 0:
                k = pop()
                k.queued = False
                if not k.flight and (held := len(k.pending)):  # k.deliverable, inlined
                    count = per_key if per_key < held else held
                    add((k, count))
                    budget -= count
            return chosen
        full = self.full
        names: set[str] = set()
        while full and budget > 0:
            k = full.popleft()
            k.in_full = False
            if k.deliverable and self.whole(k):
                count = self.batch_size(k, per_key)
                chosen.append((k, count))
                names.add(k.name)
                budget -= count
        if budget <= 0 or (not self.sealed and window.max_age is None):
            return chosen
        horizon = at - (window.max_age or 0.0)
        ready = self.ready
        for _ in range(len(ready)):
            if budget <= 0:
                break
            k = ready.popleft()
            k.queued = False
            if not k.deliverable or k.name in names:
                continue
            if self.sealed or k.pending[0].at <= horizon:
                count = self.batch_size(k, per_key)
                chosen.append((k, count))
                names.add(k.name)
                budget -= count
            else:
                k.queued = True
                ready.append(k)
        return chosen
