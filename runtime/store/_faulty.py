"""Store-call fault injection (the ``store_error`` fault kind).

The runtime wraps its store in a ``FaultyStore`` so a fault plan can make
any store call fail, by operation name as the target: ``store.write``,
``store.read``, ``store.get`` (``get_many`` too), ``store.acquire`` ...
(``store.*`` for all). ``floor`` is a log's bounds, read like its high water:
``store.high_water`` faults hit it too.
An injected failure raises ``StoreError`` *before* the call reaches the
backend, so nothing was applied, exactly as a refused connection.

Checkers, reports and a harness's own bookkeeping read the store through
:func:`without_faults`: the faults are aimed at the system under test, and
an invariant check that a fault can fail proves nothing.
"""

from __future__ import annotations

from typing import Protocol

from runtime._errors import StoreError
from runtime.store._base import Store, _require_count, _require_name
from runtime.store._types import (
    Fence,
    Lease,
    LogEntry,
    StoreSize,
    StoreStatistics,
    Versioned,
    WriteOp,
    WriteResult,
)

STORE_OPERATIONS = ("read", "high_water", "get", "scan", "write", "acquire", "release",
                    "lease", "leases")
"""What ``store_error`` faults target, as ``store.<operation>`` (``get`` covers ``get_many``)."""


class FaultSource(Protocol):
    def fire(self, kind: str, name: str) -> object | None: ...


class FaultyStore(Store):
    """Delegates to ``inner`` unless the fault source says this call fails."""

    def __init__(self, inner: Store, faults: FaultSource) -> None:
        super().__init__(inner._clock)
        self.inner = inner
        self._faults = faults

    def _maybe_fail(self, op: str) -> None:
        if self._faults.fire("store_error", f"store.{op}") is not None:
            raise StoreError(f"injected store failure in {op}")

    async def read(self, log: str, from_seq: int, limit: int) -> list[LogEntry]:
        """The backend's ``read`` (which checks the floor itself) unless a fault fires."""
        self._check_open()
        _require_name("log", log)
        _require_count("from_seq", from_seq, 0)
        _require_count("limit", limit, 0)
        self._maybe_fail("read")
        return await self.inner.read(log, from_seq, limit)

    async def _read(self, log: str, from_seq: int, limit: int) -> list[LogEntry]:
        return await self.read(log, from_seq, limit)

    async def _high_water(self, log: str) -> int:
        self._maybe_fail("high_water")
        return await self.inner.high_water(log)

    async def _floor(self, log: str) -> int:
        self._maybe_fail("high_water")  # a log's bounds, read like its high water
        return await self.inner.floor(log)

    async def _get(self, key: str) -> Versioned | None:
        self._maybe_fail("get")
        return await self.inner.get(key)

    async def _get_many(self, keys: list[str]) -> dict[str, Versioned]:
        self._maybe_fail("get")  # a record read like ``get``: the same faults hit it
        return await self.inner.get_many(keys)

    async def _scan(self, prefix: str) -> list[tuple[str, Versioned]]:
        self._maybe_fail("scan")
        return await self.inner.scan(prefix)

    async def _write(self, ops: list[WriteOp], fence: Fence | None) -> WriteResult:
        self._maybe_fail("write")
        return await self.inner._counted_write(ops, fence)  # validated by our ``write``

    async def _acquire(self, key: str, owner: str, ttl: float, now: float) -> Lease | None:
        self._maybe_fail("acquire")
        return await self.inner.acquire(key, owner, ttl)

    async def _release(self, key: str, owner: str, token: int, now: float) -> bool:
        self._maybe_fail("release")
        return await self.inner.release(key, owner, token)

    async def _lease(self, key: str, now: float) -> Lease | None:
        self._maybe_fail("lease")
        return await self.inner.lease(key)

    async def _revoke(self, key: str, now: float) -> bool:
        return await self.inner.revoke(key)

    async def _leases(self, prefix: str, now: float) -> list[Lease]:
        self._maybe_fail("leases")
        return await self.inner.leases(prefix)

    def statistics(self) -> StoreStatistics:
        """The backend's own counters (calls that failed by injection never reached it)."""
        return self.inner.statistics()

    async def _size(self) -> StoreSize:
        return await self.inner.size()

    async def _close(self) -> None:
        await self.inner.close()


def without_faults(store: Store) -> Store:
    """The store beneath any fault injection: for set-up, bookkeeping and checks that an
    injected ``store_error`` must not fail."""
    return store.inner if isinstance(store, FaultyStore) else store
