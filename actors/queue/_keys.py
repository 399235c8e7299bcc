"""What a queue server holds per queue and per strict-order key (no I/O, no policy).

A key holds its messages in offset (enqueue) order; at most one batch of
them is out at a time, always a prefix of the key (``flight`` messages from
the head). A queue keeps two indexes of the keys that could go out:
``ready`` (no batch out, something pending: a hot key with a long backlog
occupies one slot) and, on a windowed queue, ``full`` (ready and holding a
whole window). Both are lazy: an entry whose key is no longer eligible is
skipped when popped, and a key re-enters when it becomes eligible again.

A key keeps its messages in columns, not an object per message: enqueue
appends to them, a receive or an ack works on a slice from the head, in C.
Settled messages are dropped by moving the head; the columns are cut when
the head passes half of them and ``_CUT`` (or cleared when it reaches their
end), so a hot key's backlog costs amortized constant time per message, and
a key keeps at most ``max(_CUT, held)`` settled messages referenced.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque

import msgspec

from actors.queue._messages import QueuedMessage, WindowPolicy

Stamp = tuple[float, int]
"""(enqueue wall stamp, journal seq): one per enqueue event, shared by its messages."""

_CUT = 64
"""The head cuts the columns once it is past this many settled messages and half."""


class Held(msgspec.Struct, frozen=True):
    """One held message as a value (a view built when asked for, as for a dead
    letter; the key stores columns, see ``KeyState``)."""

    message: QueuedMessage
    offset: int
    at: float
    journal_seq: int
    receives: int = 0


class KeyState:
    """One strict-order key of one queue: its held messages in columns.

    ``messages``, ``offsets`` and ``stamps`` run in parallel; the held ones are
    those from ``head`` on (a key holding nothing has empty columns and head 0).
    ``receives`` counts how often each of the first ``len(receives)`` held
    messages was handed out; the rest were never handed out (0): only a
    delivered batch's members get an entry.
    """

    __slots__ = ("attempt", "deadline", "flight", "head", "in_full", "messages", "name",
                 "offsets", "pinned", "queued", "receives", "stamps")

    def __init__(self, name: str) -> None:
        self.name = name
        self.messages: list[QueuedMessage] = []
        self.offsets: list[int] = []
        self.stamps: list[Stamp] = []
        self.head = 0
        self.receives: list[int] = []
        self.flight = 0
        """Messages out (the first ``flight`` held), 0 when none is."""
        self.attempt = 0
        """The delivery number of the batch out (its head's receives)."""
        self.deadline = 0.0
        self.pinned = 0
        """On a windowed queue: the size of the window handed out and not yet settled,
        so it goes out again with the same members."""
        self.queued = False
        self.in_full = False

    @property
    def held(self) -> int:
        """How many messages the key holds."""
        return len(self.offsets) - self.head

    @property
    def deliverable(self) -> bool:
        return not self.flight and bool(self.offsets)

    def index(self, offset: int) -> int:
        """The position (from the head) of the held message at ``offset``; -1 if none
        is (settled, or never here)."""
        offsets = self.offsets
        i = bisect_left(offsets, offset, self.head)
        return i - self.head if i < len(offsets) and offsets[i] == offset else -1

    def receives_of(self, i: int) -> int:
        """How often the held message at position ``i`` was handed out."""
        receives = self.receives
        return receives[i] if i < len(receives) else 0

    def count_receives(self, start: int, stop: int, delta: int = 1) -> None:
        """Add ``delta`` to the receives of the held messages at positions
        ``start`` to ``stop`` (exclusive)."""
        receives = self.receives
        if len(receives) < stop:
            receives.extend([0] * (stop - len(receives)))
        receives[start:stop] = [r + delta for r in receives[start:stop]]

    def find(self, offset: int) -> Held | None:
        """The held message at ``offset`` as a value (None if settled)."""
        i = self.index(offset)
        if i < 0:
            return None
        at, seq = self.stamps[self.head + i]
        return Held(self.messages[self.head + i], offset, at, seq, self.receives_of(i))

    def drop(self, count: int) -> None:
        """Settle the first ``count`` held messages (at most all of them)."""
        head = self.head + count
        offsets = self.offsets
        if head >= len(offsets):
            offsets.clear()
            self.messages.clear()
            self.stamps.clear()
            self.receives.clear()
            self.head = 0
            return
        if head > _CUT and head + head > len(offsets):
            del offsets[:head]
            del self.messages[:head]
            del self.stamps[:head]
            head = 0
        self.head = head
        if self.receives:
            del self.receives[:count]

    def remove(self, i: int) -> None:
        """Settle the held message at position ``i`` alone (a dead letter)."""
        if i == 0:
            self.drop(1)
            return
        at = self.head + i
        del self.offsets[at]
        del self.messages[at]
        del self.stamps[at]
        if i < len(self.receives):
            del self.receives[i]


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
        return window is not None and (bool(k.pinned) or k.held >= window.size)

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
        idle = [name for name, k in self.keys.items() if not k.offsets]
        for name in idle:
            del self.keys[name]

    def batch_size(self, k: KeyState, per_key: int) -> int:
        """How many of ``k``'s messages go out in its next batch."""
        if k.pinned:
            return k.pinned
        limit = self.window.size if self.window is not None else per_key
        return min(limit, k.held)

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
                if not k.flight and (held := len(k.offsets) - k.head):  # k.deliverable
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
            if self.sealed or k.stamps[k.head][0] <= horizon:
                count = self.batch_size(k, per_key)
                chosen.append((k, count))
                names.add(k.name)
                budget -= count
            else:
                k.queued = True
                ready.append(k)
        return chosen
