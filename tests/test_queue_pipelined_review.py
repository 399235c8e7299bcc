"""Review probes for the queue server's own group commit (see the module of
``test_queue_pipelined_commits``): each test names the guarantee it pins."""

from __future__ import annotations

import asyncio
import contextlib
import random

import pytest

from actors.queue import QueueCluster, QueueDepth, QueuedMessage, Settlement
from actors.queue._cluster import Retry
from actors.queue._journal import MessagesEnqueued, decode_entry
from actors.queue._ledger import Ledger
from runtime import Backoff, Fault, InjectedFault, Runtime, StoreError
from runtime.store import Append, Fence, Store, WriteResult, open_store
from runtime.store._types import WriteOp
from tests.queue_helpers import sim
from tests.test_queue_pipelined_commits import (
    JOURNAL,
    GatedStore,
    refuse_the_write_behind,
    sends,
)


def test_a_server_stopped_past_its_shutdown_timeout_writes_nothing_after_its_successor(
) -> None:
    """A stop that outlasts ``shutdown_timeout`` cancels the incarnation while a journal
    write is out; no write of it may land once the next incarnation has recovered (it
    would land after that one's entries, at offsets that one handed out again)."""

    async def main() -> None:
        store = GatedStore(await open_store("memory://", clock=lambda: 0.0))
        async with Runtime(store=store, shutdown_timeout=0.5) as rt:
            cluster = QueueCluster(rt, servers=1, visibility_timeout=10.0, ask_timeout=3.0)
            await cluster.start()
            held = store.gate = asyncio.Event()
            first = sends(cluster, [[("a", b"1")]])[0]
            await rt.sleep(0.01)  # its write is out, held at the gate
            await cluster.stop()  # cancelled after 0.5 s
            store.gate = None
            again = QueueCluster(rt, servers=1, visibility_timeout=10.0)
            await again.start()
            await again.send("q", [("b", b"2")])
            held.set()  # the stopped incarnation's write, if it is still out, lands now
            with pytest.raises(StoreError, match="stopped before journaling"):
                await first  # failed when its write was given up, not at the ask timeout
            await rt.sleep(1.0)
            offsets = []
            for entry in await store.read(JOURNAL, 0, 10):
                for event in decode_entry(entry.payload).events:
                    if isinstance(event, MessagesEnqueued):
                        offsets += range(event.first_offset,
                                         event.first_offset + len(event.messages))
            assert len(offsets) == len(set(offsets)), f"offsets handed out twice: {offsets}"
            await again.stop()

    sim(main)


class SlowStore(GatedStore):
    """Journal writes take a seeded random while (so requests pile up behind them)."""

    def __init__(self, inner: Store, rng: random.Random, fail_every: int = 0) -> None:
        super().__init__(inner)
        self.rng = rng
        self.fail_every = fail_every
        """Refuse every ``fail_every``-th journal write (0: none)."""

    async def _write(self, ops: list[WriteOp], fence: Fence | None) -> WriteResult:
        if any(isinstance(op, Append) and op.log == JOURNAL for op in ops):
            await asyncio.sleep(self.rng.random() * 0.004)
            self.journal_writes.append(1)
            if self.fail_every and len(self.journal_writes) % self.fail_every == 0:
                raise StoreError("refused by the test")
        return await self.inner.write(ops, fence=fence)


def _snapshot(cluster: QueueCluster) -> dict[str, object]:
    server = cluster.servers[0]._cell.instance  # type: ignore[attr-defined]
    state = server.state
    queues = {}
    for name, q in sorted(state.queues.items()):
        keys = {k.name: ([(k.offsets[k.head + i], k.receives_of(i),
                           k.messages[k.head + i].id) for i in range(k.held)],
                         k.flight, k.attempt if k.flight else 0)
                for k in q.keys.values() if k.held}
        queues[name] = (keys, q.held, q.in_flight, q.sealed)
    return {"queues": queues, "next_offset": state.next_offset}


def _equivalence(seed: int, fail_every: int) -> None:
    """Concurrent producers and consumers against one server whose journal writes are
    slow (and, with ``fail_every``, refused now and then), checkpointing often: no
    message whose enqueue was answered is lost, and a restart rebuilds exactly the live
    state."""

    async def main() -> None:
        rng = random.Random(seed)
        store = SlowStore(await open_store("memory://", clock=lambda: 0.0), rng, fail_every)
        async with Runtime(store=store) as rt:
            opts = dict(servers=1, visibility_timeout=0.05, max_receives=3, dedup_window=0.06,
                        checkpoint_every=1 + seed % 3)
            cluster = QueueCluster(rt, **opts)  # type: ignore[arg-type]
            await cluster.start()
            retry = Retry(attempts=50, backoff=Backoff(min=0.001, max=0.01), rng=rng)
            stored: set[str] = set()
            seen: set[str] = set()

            async def produce(p: int) -> None:
                for i in range(40):
                    ids = [f"{p}.{i}.{j}" for j in range(rng.randrange(1, 4))]
                    msgs = [QueuedMessage(ident, f"k{rng.randrange(4)}", ident.encode(),
                                          Ledger()) for ident in ids]
                    await cluster.enqueue("q", msgs, retry)
                    stored.update(ids)
                    await asyncio.sleep(rng.random() * 0.02)

            async def consume(c: int, rounds: int, cluster: QueueCluster = cluster) -> None:
                for _ in range(rounds):
                    try:
                        takes = await cluster.take("q", 5, 2, on_error=lambda s, e: None,
                                                   holder=f"h{c}")
                    except StoreError:
                        continue
                    for t in takes:
                        seen.update(m.id for m in t.messages)
                    await asyncio.sleep(rng.random() * 0.01)
                    for t in takes:
                        r = rng.random()
                        others = [Settlement(t.receipt(0), 0, 0, "test")] if r < 0.2 else []
                        if r < 0.9:
                            with contextlib.suppress(StoreError):
                                await cluster.settle_taken([(t, others)], retry)
                    if rng.random() < 0.05:
                        await cluster.holder_restarted(f"h{c}", retry)

            await asyncio.gather(*[produce(p) for p in range(3)],
                                 *[consume(c, 25) for c in range(2)])
            await rt.sleep(0.5)  # every write out has landed, timers fired, ids expired
            await cluster.depth("q")
            live = _snapshot(cluster)
            await cluster.stop()
            again = QueueCluster(rt, **opts)  # type: ignore[arg-type]
            await again.start()
            recovered = _snapshot(again)
            assert recovered == live
            for _ in range(500):  # drain
                takes = await again.take("q", 50, 10, on_error=lambda s, e: None)
                for t in takes:
                    seen.update(m.id for m in t.messages)
                    with contextlib.suppress(StoreError):
                        await again.settle_taken([(t, [])], retry)
                if not takes:
                    await rt.sleep(0.02)
                    if (await again.depth("q")).drained:
                        break
            dead = {d.message.id for d in await again.dead_letters("q")}
            final = await again.depth("q")
            assert final.drained, (final, _snapshot(again))
            assert not stored - seen - dead, f"lost: {sorted(stored - seen - dead)}"
            await again.stop()

    sim(main, seed=seed)


def test_recovery_rebuilds_exactly_the_live_state_after_pipelined_writes() -> None:
    for seed in range(6):
        _equivalence(seed, 0)


def test_recovery_rebuilds_exactly_the_live_state_after_pipelined_writes_that_fail() -> None:
    for seed in range(6):
        _equivalence(seed, 40)


def test_a_crash_armed_while_a_write_is_out_strikes_after_journaling_and_the_server_recovers(
) -> None:
    async def main() -> None:
        store = GatedStore(await open_store("memory://", clock=lambda: 0.0))
        async with Runtime(store=store) as rt:
            cluster = QueueCluster(rt, servers=1, visibility_timeout=10.0)
            await cluster.start()
            cell = cluster.servers[0]._cell  # type: ignore[attr-defined]
            store.gate = asyncio.Event()
            first = sends(cluster, [[("a", b"1")]])[0]
            await rt.sleep(0.01)
            cell.arm(Fault(kind="crash", target="queue.server-0", at=0.0))
            store.gate.set()
            with pytest.raises(InjectedFault):
                await first
            await rt.sleep(0.5)
            assert cell.crashed == 1
            assert await cluster.depth("q") == QueueDepth(pending=1, in_flight=0, dead=0)
            assert (await cluster.send("q", [("a", b"1")])).duplicates == 1
            await cluster.stop()

    sim(main)


def test_the_metrics_count_only_what_became_durable() -> None:
    async def main() -> None:
        store = GatedStore(await open_store("memory://", clock=lambda: 0.0))
        async with Runtime(store=store) as rt:
            cluster = QueueCluster(rt, servers=1, visibility_timeout=10.0)
            await cluster.start()
            first, staged = await refuse_the_write_behind(rt, store, cluster)
            await first
            for task in staged:
                with contextlib.suppress(StoreError):
                    await task
            await rt.sleep(1.0)
            durable = sum(len(e.messages) for entry in await store.read(JOURNAL, 0, 10)
                          for e in decode_entry(entry.payload).events
                          if isinstance(e, MessagesEnqueued))
            assert cluster.metrics.enqueued == durable  # 3 vs 1: refused ones counted too
            await cluster.stop()

    sim(main)


def test_a_received_batch_gets_its_whole_visibility_timeout_once_handed_out() -> None:
    async def main() -> None:
        store = GatedStore(await open_store("memory://", clock=lambda: 0.0))
        async with Runtime(store=store) as rt:
            cluster = QueueCluster(rt, servers=1, visibility_timeout=1.0)
            await cluster.start()
            await cluster.send("q", [("a", b"1")])
            store.gate = asyncio.Event()
            got = asyncio.ensure_future(cluster.receive("q"))
            await rt.sleep(1.5)  # the receive's write is slow: held past the timeout
            store.gate.set()
            batch = await got
            store.gate = None
            result = await cluster.ack([d.receipt for d in batch])
            assert result.acked == 1, result  # refused: expired before it was handed out
            await cluster.stop()

    sim(main)
