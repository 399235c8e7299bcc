"""``memory://``: the contract kept in dicts, for tests and simulation.

Nothing survives the process. Every call completes without yielding to the
event loop, so under simulated time a store call never lets another task run
in between; a write is its own transaction (no group commit to wait for).
"""

from __future__ import annotations

import bisect

from runtime.store._base import Store
from runtime.store._rules import (
    RecordState,
    WritePlan,
    grant_lease,
    is_held,
    may_release,
    plan_write,
)
from runtime.store._types import (
    Clock,
    Fence,
    Lease,
    LogEntry,
    StoreSize,
    Versioned,
    WriteOp,
    WriteResult,
)


class MemoryStore(Store):
    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self._logs: dict[str, list[LogEntry]] = {}
        """Live entries per log: ``_logs[log][i]`` has seq ``floor + i``."""
        self._floors: dict[str, int] = {}
        self._records: dict[str, RecordState] = {}
        self._sorted_keys: list[str] = []
        """Every key ever written (tombstones included), sorted, for prefix scans."""
        self._leases_by_key: dict[str, Lease] = {}
        """Last grant per key, kept until released (expired ones too)."""
        self._newest_tokens: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"<MemoryStore at {id(self):#x}>"

    async def _read(self, log: str, from_seq: int, limit: int) -> list[LogEntry]:
        start = max(from_seq - self._floors.get(log, 0), 0)
        return self._logs.get(log, [])[start : start + limit]

    async def _high_water(self, log: str) -> int:
        return self._next_seq(log)

    async def _floor(self, log: str) -> int:
        return self._floors.get(log, 0)

    def _next_seq(self, log: str) -> int:
        return self._floors.get(log, 0) + len(self._logs.get(log, ()))

    async def _get(self, key: str) -> Versioned | None:
        state = self._records.get(key)
        if state is None or state.value is None:
            return None
        return Versioned(state.value, state.version)

    async def _get_many(self, keys: list[str]) -> dict[str, Versioned]:
        found: dict[str, Versioned] = {}
        for key in keys:
            state = self._records.get(key)
            if state is not None and state.value is not None:
                found[key] = Versioned(state.value, state.version)
        return found

    async def _scan(self, prefix: str) -> list[tuple[str, Versioned]]:
        found: list[tuple[str, Versioned]] = []
        keys = self._sorted_keys
        for i in range(bisect.bisect_left(keys, prefix), len(keys)):
            key = keys[i]
            if not key.startswith(prefix):
                break
            state = self._records[key]
            if state.value is not None:
                found.append((key, Versioned(state.value, state.version)))
        return found

    async def _write(self, ops: list[WriteOp], fence: Fence | None) -> WriteResult:
        plan = plan_write(
            ops,
            fence,
            next_seq=self._next_seq,
            record_state=self._records.get,
            newest_token=lambda key: self._newest_tokens.get(key, 0),
            floor=lambda log: self._floors.get(log, 0),
        )
        self._apply(plan)
        self._counters.transactions += 1
        return plan.result()

    def _apply(self, plan: WritePlan) -> None:
        for log, seq, key, payload in plan.rows:
            entries = self._logs.setdefault(log, [])
            assert seq == self._next_seq(log), f"log {log!r}: seq {seq} planned out of order"
            entries.append(LogEntry(seq, key, payload))
        for log, floor in plan.floors.items():
            old = self._floors.get(log, 0)
            if floor > old:
                del self._logs.setdefault(log, [])[: floor - old]
                self._floors[log] = floor
        for key, state in plan.records.items():
            if key not in self._records:
                bisect.insort(self._sorted_keys, key)
            self._records[key] = state

    async def _acquire(self, key: str, owner: str, ttl: float, now: float) -> Lease | None:
        lease = grant_lease(
            self._leases_by_key.get(key), self._newest_tokens.get(key, 0), key, owner, ttl, now
        )
        if lease is not None:
            self._leases_by_key[key] = lease
            self._newest_tokens[key] = lease.token
            self._counters.transactions += 1
        return lease

    async def _release(self, key: str, owner: str, token: int, now: float) -> bool:
        if not may_release(self._leases_by_key.get(key), owner, token, now):
            return False
        del self._leases_by_key[key]
        self._counters.transactions += 1
        return True

    async def _lease(self, key: str, now: float) -> Lease | None:
        lease = self._leases_by_key.get(key)
        return lease if is_held(lease, now) else None

    async def _revoke(self, key: str, now: float) -> bool:
        lease = self._leases_by_key.get(key)
        if lease is None or not is_held(lease, now):
            return False
        self._leases_by_key[key] = Lease(lease.key, lease.owner, lease.token, expires_at=now)
        self._counters.transactions += 1
        return True

    async def _leases(self, prefix: str, now: float) -> list[Lease]:
        return [
            lease
            for key, lease in sorted(self._leases_by_key.items())
            if key.startswith(prefix) and is_held(lease, now)
        ]

    async def _size(self) -> StoreSize:
        held = sum(len(e.key) + len(e.payload) for entries in self._logs.values()
                   for e in entries)
        held += sum(len(key) + len(state.value or b"") for key, state in self._records.items())
        return StoreSize(held, "estimate: bytes of the keys, payloads and values held")

    async def _close(self) -> None:
        self._logs.clear()
        self._floors.clear()
        self._records.clear()
        self._sorted_keys.clear()
        self._leases_by_key.clear()
        self._newest_tokens.clear()
