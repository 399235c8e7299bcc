"""The event trace and its digest.

Every event that matters (lifecycle, faults, and in ``full`` mode every
delivery) is folded into a running BLAKE2b digest. Under simulated time the
same program and seed give the same digest in any process, so a report's
digest proves a replay was exact. Only the most recent events are kept in
memory; the digest covers all of them.
"""

from __future__ import annotations

import hashlib
from collections import Counter, deque
from enum import StrEnum

import msgspec


class TraceLevel(StrEnum):
    """How much the trace records. ``full`` adds every delivery (simulation default)."""

    LIFECYCLE = "lifecycle"
    FULL = "full"


class TraceEvent(msgspec.Struct, frozen=True):
    """One recorded event: when (runtime clock), what, which actor, detail."""

    time: float
    kind: str
    actor: str
    detail: str = ""


class Trace:
    """Append-only event record with a running digest and per-kind counts."""

    def __init__(self, level: TraceLevel, keep: int = 10_000) -> None:
        self.level = level
        self.full = level is TraceLevel.FULL
        self._hash = hashlib.blake2b(digest_size=16)
        self._recent: deque[TraceEvent] = deque(maxlen=keep)
        self.counts: Counter[str] = Counter()

    def record(self, time: float, kind: str, actor: str, detail: str = "") -> None:
        self._hash.update(f"{time:.9f}|{kind}|{actor}|{detail}\n".encode())
        self.counts[kind] += 1
        self._recent.append(TraceEvent(time, kind, actor, detail))

    @property
    def digest(self) -> str:
        """Hex digest over every event recorded so far."""
        return self._hash.hexdigest()

    def events(self, kind: str | None = None) -> list[TraceEvent]:
        """The most recent events (up to ``keep``), optionally of one kind."""
        if kind is None:
            return list(self._recent)
        return [e for e in self._recent if e.kind == kind]

    def newest(self, kind: str, count: int) -> list[TraceEvent]:
        """Up to ``count`` of the most recent events of ``kind``, newest first.

        Scans back from the newest event and stops after ``count`` matches, so
        a sampler asking for the few faults of the last bucket stays cheap.
        """
        found: list[TraceEvent] = []
        for event in reversed(self._recent):
            if event.kind == kind:
                found.append(event)
                if len(found) == count:
                    break
        return found
