"""A queue server's own group commit, in simulated time.

One journal write is out at a time; requests that arrive meanwhile are
applied in order and go out together as the next write; no request is
answered before its write is durable (not even a ``Depth`` that would count
what it applied); a failed write fails every request staged with it, the
server recovers from the journal without them, and they can be sent again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from actors.queue import QueueCluster, QueueDepth
from runtime import Runtime, StoreError
from runtime.store import (
    Append,
    Fence,
    Lease,
    LogEntry,
    Store,
    StoreSize,
    Versioned,
    WriteResult,
    open_store,
)
from tests.queue_helpers import sim

JOURNAL = "q/queue/journal/0"


class GatedStore(Store):
    """A memory store whose journal writes can be held at a gate, counted, and failed."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner._clock)
        self.inner = inner
        self.gate: asyncio.Event | None = None
        self.journal_writes: list[int] = []
        """Per journal write, how many entries it appended."""
        self.fail_write: int | None = None
        """The index (in ``journal_writes``) of a journal write to refuse."""

    async def _write(self, ops: list, fence: Fence | None) -> WriteResult:  # type: ignore[type-arg]
        entries = sum(len(op.entries) for op in ops
                      if isinstance(op, Append) and op.log == JOURNAL)
        if entries:
            index = len(self.journal_writes)
            self.journal_writes.append(entries)
            if self.gate is not None:
                await self.gate.wait()
            if index == self.fail_write:
                raise StoreError("refused by the test")
        return await self.inner.write(ops, fence=fence)

    async def _read(self, log: str, from_seq: int, limit: int) -> list[LogEntry]:
        return await self.inner.read(log, from_seq, limit)

    async def _high_water(self, log: str) -> int:
        return await self.inner.high_water(log)

    async def _floor(self, log: str) -> int:
        return await self.inner.floor(log)

    async def _get(self, key: str) -> Versioned | None:
        return await self.inner.get(key)

    async def _get_many(self, keys: list[str]) -> dict[str, Versioned]:
        return await self.inner.get_many(keys)

    async def _scan(self, prefix: str) -> list[tuple[str, Versioned]]:
        return await self.inner.scan(prefix)

    async def _acquire(self, key: str, owner: str, ttl: float, now: float) -> Lease | None:
        return await self.inner.acquire(key, owner, ttl)

    async def _release(self, key: str, owner: str, token: int, now: float) -> bool:
        return await self.inner.release(key, owner, token)

    async def _lease(self, key: str, now: float) -> Lease | None:
        return await self.inner.lease(key)

    async def _revoke(self, key: str, now: float) -> bool:
        return await self.inner.revoke(key)

    async def _leases(self, prefix: str, now: float) -> list[Lease]:
        return await self.inner.leases(prefix)

    async def _size(self) -> StoreSize:
        return await self.inner.size()

    async def _close(self) -> None:
        await self.inner.close()


async def one_server(rt: Runtime) -> QueueCluster:
    cluster = QueueCluster(rt, servers=1, visibility_timeout=10.0, dedup_window=60.0)
    await cluster.start()
    return cluster


def sends(cluster: QueueCluster, batches: Sequence[list[tuple[str, bytes]]],
          ) -> list[asyncio.Task[object]]:
    return [asyncio.ensure_future(cluster.send("q", items)) for items in batches]


async def refuse_the_write_behind(rt: Runtime, store: GatedStore, cluster: QueueCluster,
                                  ) -> tuple[asyncio.Task[object], list[asyncio.Task[object]]]:
    """Send a@1 and hold its write at the gate; stage a@2 and b@3 behind it, arrange for
    their write to be refused, open the gate: (the first send, the two staged sends)."""
    store.gate = asyncio.Event()
    first = sends(cluster, [[("a", b"1")]])[0]
    await rt.sleep(0.01)
    store.fail_write = len(store.journal_writes)  # the next journal write
    staged = sends(cluster, [[("a", b"2")], [("b", b"3")]])
    await rt.sleep(0.01)
    store.gate.set()
    return first, staged


def test_requests_staged_while_a_write_is_out_go_out_together_as_the_next_write() -> None:
    async def main() -> None:
        store = GatedStore(await open_store("memory://", clock=lambda: 0.0))
        async with Runtime(store=store) as rt:
            cluster = await one_server(rt)
            store.gate = asyncio.Event()
            first = sends(cluster, [[("a", b"1")]])
            await rt.sleep(0.01)  # the first request's write is out, held at the gate
            rest = sends(cluster, [[("a", b"2")], [("b", b"3")], [("a", b"4")]])
            await rt.sleep(1.0)
            assert not any(t.done() for t in [*first, *rest]), "answered before durable"
            assert store.journal_writes == [1]
            store.gate.set()
            results = await asyncio.gather(*first, *rest)
            assert [r.accepted for r in results] == [1, 1, 1, 1]  # type: ignore[attr-defined]
            # the three staged meanwhile went out in one write, one entry each, in order
            assert store.journal_writes == [1, 3]
            entries = await store.read(JOURNAL, 0, 10)
            assert [e.seq for e in entries] == [0, 1, 2, 3]
            got = []
            while batch := await cluster.receive("q", per_server=10):
                got += [(d.message.key, d.message.body) for d in batch]
                await cluster.ack([d.receipt for d in batch])
            assert [b for k, b in got if k == "a"] == [b"1", b"2", b"4"]  # enqueue order
            await cluster.stop()

    sim(main)


def test_no_answer_leaves_before_its_write_is_durable_not_even_a_depth() -> None:
    async def main() -> None:
        store = GatedStore(await open_store("memory://", clock=lambda: 0.0))
        async with Runtime(store=store) as rt:
            cluster = await one_server(rt)
            store.gate = asyncio.Event()
            enqueue = sends(cluster, [[("a", b"1"), ("b", b"2")]])[0]
            await rt.sleep(0.01)
            depth = asyncio.ensure_future(cluster.depth("q"))
            await rt.sleep(5.0)
            # the depth would count two messages the store does not hold yet
            assert not enqueue.done() and not depth.done()
            store.gate.set()
            assert await depth == QueueDepth(pending=2, in_flight=0, dead=0)
            await enqueue
            await cluster.stop()

    sim(main)


def test_a_failed_write_fails_every_request_staged_with_it_and_they_can_be_sent_again(
) -> None:
    async def main() -> None:
        store = GatedStore(await open_store("memory://", clock=lambda: 0.0))
        async with Runtime(store=store) as rt:
            cluster = await one_server(rt)
            first, staged = await refuse_the_write_behind(rt, store, cluster)
            assert (await first).accepted == 1  # type: ignore[attr-defined]
            for task in staged:
                with pytest.raises(StoreError, match="refused by the test"):
                    await task
            # the server crashed and recovered from the journal: only the first is there
            await rt.sleep(1.0)
            assert await cluster.depth("q") == QueueDepth(pending=1, in_flight=0, dead=0)
            again = await asyncio.gather(*sends(cluster, [[("a", b"2")], [("b", b"3")]]))
            # never durable, so not duplicates: stored now, after the first, in order
            assert [(r.accepted, r.duplicates) for r in again] == [(1, 0), (1, 0)]  # type: ignore[attr-defined]
            batch = await cluster.receive("q", per_server=10)
            assert sorted((d.message.key, d.message.body) for d in batch) == [
                ("a", b"1"), ("b", b"3")]
            await cluster.stop()

    sim(main)
