"""Queue journals are compacted behind checkpoints, and a compacted store is still checked whole.

- A server's checkpoint write truncates its journal below the checkpoint, so
  acked messages and expired dedup ids leave the store and recovery reads the
  checkpoint and the tail only; what is still held survives a restart.
- A scenario run hands each compacted entry to its audit (``<out>/audit/``)
  first, so the invariants (strict order replays every journal entry) still
  see every decision; an entry in neither place fails the check, by name.
- Measured: at a steady rate in simulated time the SQLite store (file + WAL)
  stays bounded, after warm-up, as the originals grow fourfold.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from actors.queue import GeneratedSource, QueueCluster, QueueConfig, QueuePipeline, TierConfig
from actors.queue._journal import journal_log
from runtime import LogTruncated, Runtime, run
from runtime.scenario import Duration, FileAudit
from runtime.store import open_store
from tests.queue_helpers import (
    assert_all_held,
    drain,
    invariants,
    open_cluster,
    quiet_logs,
    run_doc,
    scenario_doc,
    sim,
)


@pytest.fixture(autouse=True)
def _quiet() -> None:
    quiet_logs()  # tests/conftest.py puts the configuration back


def test_compaction_drops_settled_entries_and_recovery_keeps_what_is_held() -> None:
    """Acked messages and expired dedup ids leave the journal; a restarted server
    recovers from the checkpoint and the tail, still holding its unacked messages
    in order, and still dropping a duplicate whose id is inside the window."""

    async def main() -> None:
        async with open_cluster(servers=1, dedup_window=20.0, checkpoint_every=2) as (rt, c):
            log = journal_log(c.name, 0)
            for i in range(10):
                await c.send("q", [(f"k{i % 3}", b"%d" % i)], dedup_ids=[f"a{i}"])
            assert (await drain(c, "q"))["k0"] == [b"0", b"3", b"6", b"9"]
            await rt.sleep(30.0)  # the a* ids leave the dedup window
            await c.send("q", [("k1", b"kept-1"), ("k1", b"kept-2")], dedup_ids=["b1", "b2"])
            for i in range(6):  # more requests: they take checkpoints
                await c.send("other", [("z", b"z")], dedup_ids=[f"c{i}"])
            assert (await c.send("q", [("k2", b"x")], dedup_ids=["b1"])).duplicates == 1
            floor = await rt.store.floor(log)
            assert floor > 0, "nothing was compacted"
            with pytest.raises(LogTruncated) as caught:
                await rt.store.read(log, 0, 10)
            assert caught.value.floor == floor
            await c.stop()
            restarted = QueueCluster(rt, name=c.name, servers=1, visibility_timeout=10.0,
                                     max_receives=3, dedup_window=20.0,
                                     checkpoint_every=2)
            await restarted.start()
            assert (await restarted.send("q", [("k1", b"again")], dedup_ids=["b2"])
                    ).duplicates == 1
            assert await drain(restarted, "q") == {"k1": [b"kept-1", b"kept-2"]}
            assert len((await drain(restarted, "other"))["z"]) == 6
            await restarted.stop()

    sim(main)


def test_a_batch_headed_before_the_checkpoint_stays_settled_after_recovery() -> None:
    """Regression: a batch whose head was enqueued before the checkpoint and whose
    later member after it was acked; a replay from the checkpoint used to skip the
    ack (its head was not replayed) and hand the later member out again."""

    async def main() -> None:
        options = {"servers": 1, "visibility_timeout": 10.0, "max_receives": 3,
                   "dedup_window": 20.0, "checkpoint_every": 1}
        async with open_cluster(**options) as (rt, c):
            await c.send("q", [("k", b"old")], dedup_ids=["m1"])
            await rt.sleep(15.0)
            await c.send("q", [("k", b"new")], dedup_ids=["m2"])
            (batch,) = await c.receive_batches("q", per_key=10)
            assert batch.messages[-1].body == b"new"
            assert (await c.ack([batch.receipt])).acked == 2
            await rt.sleep(10.0)  # m1 leaves the dedup window, m2 not yet
            await c.send("other", [("z", b"z")], dedup_ids=["c1"])
            assert await rt.store.floor(journal_log(c.name, 0)) == 1  # m2's enqueue
            await c.stop()
            restarted = QueueCluster(rt, name=c.name, **options)
            await restarted.start()
            assert await drain(restarted, "q") == {}
            await restarted.stop()

    sim(main)


def _compacting_doc(out: Path, **queue: object) -> dict[str, object]:
    return scenario_doc(
        f"sqlite:///{out}/state.db", name="compacting", checkpoint_every=4,
        dedup_window="600ms", rate=200.0, lineage="full",
        faults=[{"kind": "crash", "target": "queue.server-*", "every": "300ms"}],
        expect={"min_server_recoveries": 3}, **queue)


def _floors(out: Path, servers: int) -> list[int]:
    async def main() -> list[int]:
        async with await open_store(f"sqlite:///{out}/state.db", clock=lambda: 0.0) as store:
            return [await store.floor(journal_log("queue", i)) for i in range(servers)]

    return run(main)


def _audit(out: Path) -> Path:
    return out / "audit" / "queue-queue.msgpack"


def test_a_compacted_store_is_checked_whole_from_the_audit(tmp_path: Path) -> None:
    """Servers crash while compacting; every invariant (strict order over every
    journal entry, the ledger, full lineage) still holds, read from the audit and
    the store's tail, and every original's lineage is verified."""
    out = tmp_path / "out"
    report = run_doc(_compacting_doc(out), out)
    assert_all_held(report)
    floors = _floors(out, 3)
    assert all(floor > 0 for floor in floors), floors
    audit = FileAudit(_audit(out))
    for server, floor in enumerate(floors):
        seqs = [e.seq for e in audit.entries(journal_log("queue", server))]
        assert seqs[:floor] == list(range(floor))
    lineage = (out / "lineage.jsonl").read_text().splitlines()
    assert len(lineage) == 400 and all(json.loads(line)["verified"] for line in lineage)


def test_an_entry_neither_in_the_audit_nor_the_store_fails_the_check(tmp_path: Path) -> None:
    """The check never skips what compaction dropped: without the audit, reporting
    the finished run again fails strict order and names what is missing."""
    out = tmp_path / "out"
    doc = _compacting_doc(out)
    assert_all_held(run_doc(doc, out))
    _audit(out).unlink()
    floor = _floors(out, 3)[1]
    report = run_doc(doc, out)
    assert not report.passed
    strict = invariants(report)["strict_order"]
    assert not strict.held
    assert f"server 1: q/queue/journal/1: truncated below seq {floor} and the audit holds " \
           "0 of those entries" in strict.detail, strict.detail


def _store_bytes(db: Path) -> int:
    wal = db.with_name(db.name + "-wal")
    return db.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def test_store_size_stays_bounded_at_a_steady_rate(tmp_path: Path) -> None:
    """2,000 originals/s through map -> reduce -> reduce for 40 simulated seconds: the
    SQLite file and its WAL at 4x the originals are at most 1.5x their size at 1x
    (10 s in, well past the 2 s dedup window and the windows' ages), and so are the
    journal entries the store holds (each server's high water minus its floor).

    The WAL is held to 256 pages (1 MiB, as in tests/test_bounded_storage.py): at the
    default 16 MiB its size follows the background checkpoint's timing, not the
    journal (8-19 MB of a 3 MB store; 1.04-2.22x between the marks)."""
    db = tmp_path / "state.db"
    n = 20_000
    config = QueueConfig(
        name="steady", servers=2, source=GeneratedSource(records=4 * n, keys=200),
        rate=2000.0, produce_chunk=200, visibility_timeout=Duration(1.0),
        dedup_window=Duration(2.0), checkpoint_every=16,
        tiers=[TierConfig("transform", "map", clients=2, out_keys=40),
               TierConfig("summarize", "reduce", clients=2, window=20,
                          window_time=Duration(0.5), out_keys=8),
               TierConfig("aggregate", "reduce", clients=1, window=50,
                          window_time=Duration(1.0))])
    sizes: dict[int, int] = {}
    live: dict[int, int] = {}

    async def main() -> None:
        async with Runtime(store=f"sqlite:///{db}?wal_pages=256") as rt:
            pipeline = QueuePipeline(rt, config, audit=FileAudit(tmp_path / "audit.msgpack"))
            await pipeline.start()
            while not await pipeline.done():
                produced = pipeline.metrics_produced
                for mark in (n, 4 * n):
                    if produced >= mark and mark not in sizes:
                        sizes[mark] = _store_bytes(db)
                        logs = [journal_log("steady", i) for i in range(2)]
                        live[mark] = sum([await rt.store.high_water(log)
                                          - await rt.store.floor(log) for log in logs])
                await rt.sleep(0.1)
            await pipeline.stop()

    sim(main)
    assert set(sizes) == {n, 4 * n}
    assert sizes[4 * n] <= 1.5 * sizes[n], sizes
    assert live[4 * n] <= 1.5 * live[n], live
