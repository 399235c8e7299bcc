"""How long a log keeps its records, and the bookkeeping that decides when to drop them.

``LogRetention`` is the ``retention`` table of a log (``[log] retention =
{ time = "24h", bytes = 1_000_000, acked = true }``). A record is dropped
(the log is truncated below it) as soon as any limit that is set says so:

- ``time``: it was appended longer ago than this (default 24 h);
- ``bytes``: the log holds more than this many key and payload bytes (the
  oldest appends go first, whole; default: no limit);
- ``acked``: every live session has settled it, acknowledged or
  dead-lettered (JetStream's interest retention; default off). With no
  live session at all, nothing is holding a record and all may go.

A session whose next record was dropped is answered ``RecordsTruncated``
(HTTP 410, naming the new floor), never skipped past silently. Expired
sessions are deleted (their state and dead letters) once they have been
expired for one more TTL; until then a request still gets ``expired``.
An append's idempotency key (``_appends``) is kept ``idempotency_window``
after its append (default 1 h), then deleted.

Ages and sizes are kept in memory as records are appended; after a restart
the records already there count as appended at the restart (so ``time``
is never early, at most one period late), and their sizes are read once.
"""

from __future__ import annotations

from collections import deque
from typing import Annotated

import msgspec
from msgspec import Meta

from actors.logdelivery import _keys as keys
from actors.logdelivery._errors import RecordsTruncated
from runtime.scenario import Audit, Duration, audit_before_truncating
from runtime.store import Delete, LogEntry, Store, Truncate

DEFAULT_TIME = 24 * 3600.0
DEFAULT_IDEMPOTENCY_WINDOW = 3600.0
_PAGE = 10_000


class LogRetention(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Limits on what a log keeps; ``None`` leaves a limit unset (see the module)."""

    time: Duration | None = Duration(DEFAULT_TIME)
    bytes: Annotated[int, Meta(ge=1)] | None = None
    acked: bool = False
    idempotency_window: Duration = Duration(DEFAULT_IDEMPOTENCY_WINDOW)

    def problems(self) -> list[tuple[str, str]]:
        found = []
        if self.time is not None and self.time < 0:
            found.append(("retention.time", "expected a duration >= 0"))
        if not self.idempotency_window > 0:
            found.append(("retention.idempotency_window", "expected a duration > 0"))
        return found


def entry_bytes(entries: list[LogEntry]) -> int:
    return sum(len(e.key) + len(e.payload) for e in entries)


class RetentionClock:
    """Appended records of one log as ``(end, wall time, bytes)`` spans, oldest first:
    the records below ``end`` were appended by that time, and the span holds ``bytes``."""

    def __init__(self, floor: int) -> None:
        self.floor = floor
        self.spans: deque[tuple[int, float, int]] = deque()
        self.live_bytes = 0

    def appended(self, end: int, at: float, size: int) -> None:
        self.spans.append((end, at, size))
        self.live_bytes += size

    def target(self, retention: LogRetention, now: float,
               session_floors: list[int] | None) -> int:
        """The floor retention asks for (at least the current one); ``session_floors``:
        each live session's first unsettled seq, or ``None`` when ``acked`` is off."""
        target = self.floor
        live = self.live_bytes
        for end, at, size in self.spans:
            old = retention.time is not None and at <= now - retention.time
            big = retention.bytes is not None and live > retention.bytes
            if not (old or big):
                break
            target, live = end, live - size
        if session_floors is not None:
            high = self.spans[-1][0] if self.spans else self.floor
            target = max(target, min(session_floors, default=high))
        return target

    def truncated(self, floor: int) -> None:
        """The log is now truncated below ``floor``: forget the spans below it."""
        self.floor = max(self.floor, floor)
        while self.spans and self.spans[0][0] <= self.floor:
            self.live_bytes -= self.spans.popleft()[2]


async def recovered_clock(store: Store, log: str, retention: LogRetention, high_water: int,
                          now: float) -> RetentionClock:
    """The clock of a log after a restart: what is there counts as appended ``now``; its
    sizes are read once, only when a ``bytes`` limit needs them."""
    clock = RetentionClock(await store.floor(log))
    at = clock.floor
    while retention.bytes is not None and at < high_water:
        page = await store.read(log, at, _PAGE)
        if not page:
            break
        at = page[-1].seq + 1
        clock.appended(at, now, entry_bytes(page))
    if at < high_water:
        clock.appended(high_water, now, 0)
    return clock


async def session_deletion(store: Store, audit: Audit | None, log: str, session: str,
                           state: bytes, version: int) -> list[Delete | Truncate]:
    """The ops deleting an expired session (its state and dead letters), audited first."""
    key = keys.session_key(log, session)
    dead = keys.dead_letter_log(log, session)
    end = await store.high_water(dead)
    if audit is not None:
        audit.record_value(key, state)
    await audit_before_truncating(store, audit, dead, await store.floor(dead), end)
    return [Delete(key, version), Truncate(dead, end)]


def truncated(log: str, what: str, floor: int) -> RecordsTruncated:
    return RecordsTruncated(
        f"log {log!r} no longer has {what} (retention truncated it below seq {floor}); "
        f"create a session from 'earliest' (seq {floor})", floor=floor)
