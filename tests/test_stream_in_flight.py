"""Several batches in flight per partition (``batches_in_flight``), at exact boundaries.

A partition may have up to ``batches_in_flight`` batches recorded as pending
at once, delivered one after the other while the earlier ones are committed.
What must not move:

- a crash with 2-3 batches pending replays exactly those, in order, under the
  same batch ids and with the same records, before anything new; the
  destination ends with every record once;
- a lease taken over while batches are in flight: the successor replays the
  pending batches, the stalled worker's late commit is refused (fencing), and
  commits stay contiguous with fencing tokens that never go down.

One partition, a backlog (``rate = 0``) and a destination that takes exactly
0.1 simulated seconds per batch, so a fault's time names the exact step it
lands on: an armed crash strikes at the worker's next message, the
``Delivered`` of the batch in flight, after the destination took it and
before it is committed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import runtime
from actors.stream import (
    Batch,
    CallableDestination,
    GeneratedSource,
    StreamConfig,
    StreamJob,
    batch_id,
)
from actors.stream import _keys as keys
from actors.stream._buffer import ChunkBuffer, Slice
from actors.stream._checks import check_stream, recorder
from actors.stream._held import HeldPartition
from actors.stream._messages import CommitBatch, RecordPending
from actors.stream._partition import CheckpointReply, Partition
from actors.stream._records import PendingCheckpoint
from actors.stream._worker import Worker
from runtime import Fault, InjectedFault, Runtime
from tests.stream_helpers import quiet_logs

RECORDS = 300
SEED = 5


@pytest.fixture(autouse=True)
def _quiet() -> None:
    quiet_logs()


def _config(**overrides: Any) -> StreamConfig:
    fields: dict[str, Any] = {
        "source": GeneratedSource(records=RECORDS, keys=10, payload_bytes=16),
        "partitions": 1, "workers": 1, "batch_size": 10, "batches_in_flight": 3,
        "produce_chunk": RECORDS, "rate": 0.0, "lease_ttl": 1.0,
        "rebalance_interval": 0.2, "ask_timeout": 5.0,
    }
    return StreamConfig(**{**fields, **overrides})


class _Run:
    """One simulated run: every delivery in order, and the pending batches each worker
    found when it recovered (what it must replay)."""

    def __init__(self, slow: dict[int, float] | None = None) -> None:
        self.slow = slow or {}
        """Seconds per batch by partition, where not 0.1."""
        self.deliveries: list[Batch] = []
        self.replays: list[tuple[int, list[str]]] = []
        """(deliveries so far, pending batch ids) at each checkpoint read that found
        some: a worker's recovery after a crash, or a successor taking the lease over."""
        self.results: dict[str, bool] = {}
        self.job: StreamJob | None = None

    async def deliver(self, batch: Batch) -> None:
        """A destination that takes exactly 0.1 s per batch (or as ``slow`` says for its
        partition), then holds it."""
        await asyncio.sleep(self.slow.get(batch.partition, 0.1))
        self.deliveries.append(batch)


async def _trusted_lease(self: Worker, partition: int, held: HeldPartition) -> bool:
    return True


def _run(config: StreamConfig, faults: list[Fault], monkeypatch: pytest.MonkeyPatch,
         trusting: bool = False, slow: dict[int, float] | None = None) -> _Run:
    """``trusting``: the worker skips its own lease check before a commit, so a late
    commit reaches the partition and only the fenced write stands in its way."""
    run = _Run(slow)
    read_checkpoint = Worker._checkpoint

    async def recording_checkpoint(self: Worker, partition: int, held: HeldPartition
                                   ) -> ChunkBuffer:
        buffer = await read_checkpoint(self, partition, held)
        ids = [run_bid(partition, taken) for taken in held.window]
        if ids:
            run.replays.append((len(run.deliveries), ids))
        return buffer

    def run_bid(partition: int, taken: Slice) -> str:
        return batch_id(config.name, partition, taken.first_seq, taken.last_seq)

    monkeypatch.setattr(Worker, "_checkpoint", recording_checkpoint)
    if trusting:
        monkeypatch.setattr(Worker, "_lease_checked", _trusted_lease)

    async def main() -> None:
        async with Runtime(store="memory://", seed=SEED, faults=faults) as rt:
            destination = CallableDestination(run.deliver)
            recorded = recorder(destination)
            job = StreamJob(rt, config, destination=destination, seed=SEED)
            run.job = job
            await job.start()
            assert await job.wait_done(deadline=300.0), "not done in 300 simulated s"
            run.results = {r.name: r.held for r in await check_stream(job, recorded)}
            await job.close()

    runtime.run(main, simulated=True, seed=SEED)
    return run


def _assert_each_record_once(run: _Run, partitions: int = 1) -> None:
    """Every seq of every partition once across distinct batch ids; a repeated id
    carries the same records."""
    by_id: dict[str, Batch] = {}
    for batch in run.deliveries:
        first = by_id.setdefault(batch.batch_id, batch)
        assert first == batch, f"{batch.batch_id} delivered again with other records"
    held = sorted((b.partition, s) for b in by_id.values() for s in b.seqs)
    assert len(held) == RECORDS
    for partition in range(partitions):
        seqs = [s for p, s in held if p == partition]
        assert seqs == list(range(len(seqs))) and seqs, partition


@pytest.mark.parametrize(("at", "pending_count", "already_delivered"), [
    (0.2, 3, 1),    # as the destination takes batch 1: struck at its Delivered
    (0.25, 3, 1),   # mid-delivery of batch 2: it reaches the destination, then the crash
    (0.3, 3, 1),    # at the boundary where batch 2 ends
    (0.55, 3, 1),
    (1.0, 3, 0),    # struck while batch 9 is in flight (cancelled with the worker)
    (2.85, 2, 1),   # near the end of the source: only two batches left to record
])
def test_a_crash_with_batches_pending_replays_exactly_those(
        at: float, pending_count: int, already_delivered: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Crash the worker at ``at``: the restarted worker finds ``pending_count`` batches
    pending and its first deliveries are exactly those, in order, under the same ids and
    with the same records; ``already_delivered`` of them had reached the destination
    before the crash (delivered twice, harmlessly); the sink holds each record once."""
    run = _run(_config(), [Fault(kind="crash", target="stream.worker-0", at=at)], monkeypatch)
    assert run.results == {"exactly_once": True, "order": True, "no_stale_commit": True}
    _assert_each_record_once(run)
    assert len(run.replays) == 1, run.replays
    (before, pending), = run.replays
    assert len(pending) == pending_count, pending
    replayed = [b.batch_id for b in run.deliveries[before:before + len(pending)]]
    assert replayed == pending
    delivered_before = {b.batch_id for b in run.deliveries[:before]}
    assert len(delivered_before & set(pending)) == already_delivered
    assert run.job is not None and run.job.metrics.redelivered_batches == len(pending)


@pytest.mark.parametrize("in_flight", [1, 2, 3])
def test_batches_in_flight_caps_the_pending_batches(
        in_flight: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash at 0.55 s finds at most ``batches_in_flight`` batches pending (with 1,
    the one-batch protocol as before), and the replay is exact for each setting."""
    config = _config(batches_in_flight=in_flight)
    run = _run(config, [Fault(kind="crash", target="stream.worker-0", at=0.55)], monkeypatch)
    assert all(run.results.values()), run.results
    _assert_each_record_once(run)
    (before, pending), = run.replays
    assert 1 <= len(pending) <= in_flight
    assert [b.batch_id for b in run.deliveries[before:before + len(pending)]] == pending


@pytest.mark.parametrize("trusting", [False, True], ids=["worker-checks", "store-fences"])
def test_a_lease_taken_over_mid_flight_refuses_the_stale_commit(
        trusting: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two workers, one partition: its holder (worker-0) stalls for 3 s (a pause, 3
    lease TTLs) at 0.55 s with three batches pending and one being delivered. Worker-1
    takes the lease over and delivers exactly the pending batches first, under a newer
    token; worker-0's commit when it wakes is refused: by its own lease check, or (when
    it trusts its lease) by the partition, which its successor has moved past (and
    whose write is fenced by the newer token). Commits stay contiguous, fencing tokens
    never go down, each record is at the destination once."""
    pause = Fault(kind="pause", target="stream.worker-0", at=0.55, duration=3.0)
    run = _run(_config(workers=2), [pause], monkeypatch, trusting)
    assert run.results == {"exactly_once": True, "order": True, "no_stale_commit": True}
    _assert_each_record_once(run)
    job = run.job
    assert job is not None
    assert job.metrics.lease_moves == 1
    assert job.metrics.last_owner == {0: "stream.worker-1"}
    assert job.metrics.late_commits_refused >= 1
    (before, pending), *_ = run.replays
    assert len(pending) == 3
    assert [b.batch_id for b in run.deliveries[before:before + 3]] == pending


def _pending(first: int, last: int, token: int) -> PendingCheckpoint:
    return PendingCheckpoint(batch_id("stream", 0, first, last), first, last, token, 0, 0)


def test_the_partition_records_and_commits_only_consecutive_pending_batches() -> None:
    """The partition actor, the single writer of the checkpoint, refuses pending batches
    that leave a gap or overlap (on record and on commit), and a commit that skips the
    oldest pending batch; consecutive ones are recorded, committed oldest first (each
    with its commit record), and the rest stay pending, in order."""

    async def main() -> list[str]:
        async with Runtime(store="memory://", seed=1) as rt:
            job = StreamJob(rt, _config(), destination=CallableDestination(lambda b: None))
            part = await rt.spawn(Partition, job, 0, name="stream.partition-0")
            lease = await rt.store.acquire(keys.lease_key("stream", 0), "w", 60.0)
            assert lease is not None
            t = lease.token

            async def ask(msg: RecordPending | CommitBatch) -> CheckpointReply:
                reply = await part.ask(msg)
                assert isinstance(reply, CheckpointReply)
                return reply

            refused = [
                (await ask(RecordPending(t, "w", [_pending(0, 9, t), _pending(11, 19, t)]))
                 ).refused,
                (await ask(RecordPending(t, "w", [_pending(0, 9, t), _pending(9, 19, t)]))
                 ).refused,
            ]
            a, b, c = _pending(0, 9, t), _pending(10, 19, t), _pending(20, 29, t)
            assert not (await ask(RecordPending(t, "w", [a, b, c]))).refused
            refused += [
                (await ask(CommitBatch(b.batch_id, 10, 19, t, "w", 0))).refused,
                (await ask(CommitBatch(a.batch_id, 0, 9, t, "w", 0, [_pending(31, 39, t)]))
                 ).refused,
            ]
            done = await ask(CommitBatch(b.batch_id, 0, 19, t, "w", 0, [_pending(30, 39, t)]))
            assert not done.refused
            assert done.checkpoint.next_seq == 20
            assert [p.batch_id for p in done.checkpoint.pendings] == [
                c.batch_id, batch_id("stream", 0, 30, 39)]
            commits = await rt.store.read(keys.commits_log("stream", 0), 0, 10)
            assert [e.key for e in commits] == [a.batch_id, b.batch_id]
            return refused

    refused = runtime.run(main, simulated=True, seed=1)
    assert all(refused), refused
    assert "does not start after" in refused[0] and "does not start after" in refused[1]
    assert "no pending batch" in refused[2]
    assert "does not start after" in refused[3]


def test_pending_batches_reach_the_destination_while_the_handler_is_stalled() -> None:
    """The delivery task goes on to the next pending batch by itself: while the worker's
    handler is paused (it commits nothing, handles no message), the batches already
    recorded as pending still reach the destination, in order; nothing beyond them (new
    batches are cut by commits). The lease outlives the pause, so nothing moves."""
    deliveries: list[tuple[float, str]] = []

    async def deliver(batch: Batch) -> None:
        await asyncio.sleep(0.1)
        deliveries.append((asyncio.get_running_loop().time(), batch.batch_id))

    pause = Fault(kind="pause", target="stream.worker-0", at=0.55, duration=3.0)

    async def main() -> dict[str, bool]:
        async with Runtime(store="memory://", seed=SEED, faults=[pause]) as rt:
            destination = CallableDestination(deliver)
            recorded = recorder(destination)
            job = StreamJob(rt, _config(lease_ttl=20.0), destination=destination, seed=SEED)
            await job.start()
            assert await job.wait_done(deadline=300.0)
            results = {r.name: r.held for r in await check_stream(job, recorded)}
            await job.close()
            return results

    results = runtime.run(main, simulated=True, seed=SEED)
    assert results == {"exactly_once": True, "order": True, "no_stale_commit": True}
    during = [bid for at, bid in deliveries if 0.55 < at < 3.55]
    assert len(during) == 3, during  # the window: batches_in_flight = 3
    ids = [bid for _, bid in deliveries]
    assert len(ids) == len(set(ids)) == RECORDS // 10  # nothing delivered twice


def _delivered_ids(run: _Run, like: str, start: int, stop: int | None = None) -> list[str]:
    """Ids of the deliveries ``start:stop`` to the partition of batch id ``like``."""
    partition = like.rsplit("-", 2)[0]
    return [b.batch_id for b in run.deliveries[start:stop]
            if b.batch_id.rsplit("-", 2)[0] == partition]


def test_a_restarted_worker_replays_its_partitions_side_by_side(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """One worker, two partitions, each with batches pending when the worker crashes at
    0.55 s: the restarted worker replays both at once (the destination takes 0.1 s per
    batch, so one after the other would take the sum), each partition's pending batches
    in order under the same ids, then goes on; each record reaches the sink once."""
    run = _run(_config(partitions=2), [Fault(kind="crash", target="stream.worker-0",
                                             at=0.55)], monkeypatch)
    assert run.results == {"exactly_once": True, "order": True, "no_stale_commit": True}
    _assert_each_record_once(run, 2)
    assert len(run.replays) == 2, run.replays
    for before, pending in run.replays:
        assert _delivered_ids(run, pending[0], before)[:len(pending)] == pending
    start = min(before for before, _ in run.replays)
    pending_ids = {bid for _, ids in run.replays for bid in ids}
    order = [b.batch_id for b in run.deliveries[start:]]
    first_new = min(i for i, bid in enumerate(order) if bid not in pending_ids)
    replayed = order[:first_new]
    assert sorted(replayed) == sorted(pending_ids)  # both partitions' replays, first
    partition_of = [bid.rsplit("-", 2)[0] for bid in replayed]
    assert partition_of != sorted(partition_of), partition_of  # interleaved: side by side


def test_a_crash_in_the_middle_of_recovery_cancels_the_other_replay(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The destination takes 0.1 s per batch of partition 0, 0.25 s of partition 1. The
    second crash, armed at 0.6 s, strikes the restarted worker inside ``recover``: at
    the first fault point of partition 0's replay (its commit, which recorded the next
    batches), while partition 1's replay is still delivering, which is cancelled. The
    worker restarts once more and replays exactly what each partition has pending by
    then, in order; nothing new was delivered in between. Each record reaches the sink
    once; a batch delivered again carries the same records."""
    faults = [Fault(kind="crash", target="stream.worker-0", at=0.55),
              Fault(kind="crash", target="stream.worker-0", at=0.6)]
    outcomes: list[str] = []
    replay = Worker._replay

    async def watched_replay(self: Worker, partition: int, held: HeldPartition) -> None:
        try:
            await replay(self, partition, held)
        except asyncio.CancelledError:
            outcomes.append(f"p{partition} cancelled")
            raise
        except InjectedFault:
            outcomes.append(f"p{partition} crashed")
            raise
        outcomes.append(f"p{partition} done")

    monkeypatch.setattr(Worker, "_replay", watched_replay)
    run = _run(_config(partitions=2), faults, monkeypatch, slow={1: 0.25})
    assert outcomes[:2] == ["p0 crashed", "p1 cancelled"], outcomes
    assert sorted(outcomes[2:]) == ["p0 done", "p1 done"], outcomes
    assert run.results == {"exactly_once": True, "order": True, "no_stale_commit": True}
    _assert_each_record_once(run, 2)
    assert len(run.replays) == 4, run.replays  # two recoveries, two partitions each
    first, second = sorted({before for before, _ in run.replays})
    for before, pending in run.replays:
        got = _delivered_ids(run, pending[0], before, second if before == first else None)
        if "-p001-" in pending[0] and before == first:  # cut short by the cancel
            assert got and got == pending[:len(got)] and len(got) < len(pending), got
        else:
            assert got[:len(pending)] == pending, got
    again = {bid for before, ids in run.replays if before == first for bid in ids}
    assert {b.batch_id for b in run.deliveries[first:second]} <= again  # nothing new
    job = run.job
    assert job is not None and job.rt.faults.injected == 2
