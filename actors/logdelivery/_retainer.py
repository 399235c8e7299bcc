"""The retention passes of one log server (the policy is ``_retention``'s docstring).

A ``Retainer`` keeps what a pass needs between requests: the log's
``RetentionClock`` and the ids of every session in the store (the server's
cache may hold fewer). A pass runs at most every ``RETAIN_EVERY`` seconds of
wall time, because it looks at every session of the log.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec

from actors.logdelivery import _keys as keys
from actors.logdelivery._retention import (
    LogRetention,
    RetentionClock,
    entry_bytes,
    recovered_clock,
    session_deletion,
)
from actors.logdelivery._state import SessionState
from runtime.scenario import Audit, audit_before_truncating
from runtime.store import Delete, Fence, LogEntry, Store, Truncate

RETAIN_EVERY = 0.25
"""Seconds (wall) between retention passes."""

SessionView = tuple[SessionState, int, float]
"""A session's state, its record's version, and its last activity (wall)."""

_encode = msgspec.msgpack.Encoder().encode


class Retainer:
    def __init__(self, log: str, retention: LogRetention, audit: Audit | None) -> None:
        self.log = log
        self.records_log = keys.records_log(log)
        self.retention = retention
        self.audit = audit
        self.clock = RetentionClock(0)
        self.session_ids: set[str] = set()
        self._passed_at = float("-inf")

    @property
    def floor(self) -> int:
        """The log's first record (below it, retention truncated)."""
        return self.clock.floor

    async def recover(self, store: Store, high_water: int, now: float) -> None:
        self.clock = await recovered_clock(store, self.records_log, self.retention,
                                           high_water, now)
        prefix = keys.session_prefix(self.log)
        self.session_ids = {key[len(prefix):] for key, _ in await store.scan(prefix)}

    def appended(self, high_water: int, now: float, entries: list[tuple[str, bytes]]) -> None:
        self.clock.appended(high_water, now, entry_bytes(
            [LogEntry(0, key, payload) for key, payload in entries]))

    async def run(self, store: Store, now: float, high_water: int,
                  view: Callable[[str], Awaitable[SessionView | None]],
                  fence: Fence | None = None) -> list[str]:
        """One pass if one is due; returns the sessions it deleted. ``view`` gives a
        session (``None``: gone). Written under ``fence`` if given. A ``StoreError``
        means nothing was applied."""
        if now - self._passed_at < RETAIN_EVERY:
            return []
        self._passed_at = now
        floors: list[int] = []
        ops: list[Delete | Truncate] = []
        doomed: list[str] = []
        for session in sorted(self.session_ids):
            found = await view(session)
            if found is None:  # deleted by an earlier incarnation's last pass
                self.session_ids.discard(session)
                continue
            state, version, last = found
            if not (state.expired or now > last + state.ttl):
                floors.append(state.floor)
            elif now > last + 2 * state.ttl:
                doomed.append(session)
                ops += await session_deletion(store, self.audit, self.log, session,
                                              _encode(state), version)
        clock = self.clock
        target = clock.target(self.retention, now, floors if self.retention.acked else None)
        target = min(target, high_water)
        if target > clock.floor:
            await audit_before_truncating(store, self.audit, self.records_log, clock.floor,
                                          target)
            ops.append(Truncate(self.records_log, target))
        if not ops:
            return []
        result = await store.write(ops, fence=fence)
        self.session_ids.difference_update(doomed)
        if self.records_log in result.floors:
            clock.truncated(result.floors[self.records_log])
        return doomed
