"""The stream worker: the pending-checkpoint protocol for the partitions it leases.

For a partition it holds under a lease, a worker

1. reads the checkpoint once (from the partition actor, its single writer)
   and keeps it, with the partition's log read ahead (``ChunkBuffer``);
2. with **pending batches**: takes exactly the named ranges again; with
   **none**: cuts the next up to ``batches_in_flight`` batches of at most
   ``batch_size`` records (up to ``max_batch_bytes`` each when the partition
   is backlogged) and durably records them as pending (one fenced
   write naming each range under its deterministic batch id);
3. processes and delivers the pending batches one after the other, in
   sequence order;
4. commits (fenced) every batch delivered so far, oldest first, while the
   next is delivered; the same write records as many newly cut batches as
   pending as the commit frees (so one write per commit, and the
   checkpoint always names exactly the ranges processed next); then on
   with 3, or back to 2 when nothing was buffered.

A crash anywhere leaves either nothing pending (the ranges are chosen
again) or the pending batches: ``recover`` replays exactly those, in order
and under the same ids, before any new message; the destination writes by
batch id (or by sequence), so a batch delivered before the crash changes
nothing. A destination failure keeps the batch pending and retries it with
backoff; nothing is skipped. A worker whose lease was taken over finds its
pending write or commit refused (stale fencing token) and lets the
partition go.

Deliveries (step 3) run in a task of their own, not in the message
handler: a worker's partitions deliver concurrently, a partition's next
batch is delivered while the last one is committed (the task goes on to
the next pending batch itself, without waiting for the handler, which may
be committing for another partition meanwhile), and a batch that takes
longer than the lease TTL does not hold up ``Renew`` (liveness: the lease
is renewed every ``lease_ttl / 3`` while the batch runs, and checked again
before each commit). An actor that stalls as a whole (a
``pause``) stops renewing, so its partitions move to another worker and
its late commit is refused, as for a stalled process.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import TYPE_CHECKING

from actors.stream import _keys as keys
from actors.stream._buffer import ChunkBuffer, Slice
from actors.stream._held import HeldPartition
from actors.stream._messages import (
    Assign,
    CommitBatch,
    Delivered,
    ReadCheckpoint,
    RecordPending,
    Renew,
    Revoke,
    Work,
    WorkerMsg,
)
from actors.stream._partition import CheckpointReply
from actors.stream._records import Batch, PendingCheckpoint, Record, batch_id
from runtime import Actor, BackgroundTasks, ShardlineError

if TYPE_CHECKING:
    from actors.stream._job import StreamJob


class DestinationError(ShardlineError):
    """The destination refused a batch (injected ``destination_error`` or a real failure)."""


class Worker(Actor[WorkerMsg]):
    mailbox_capacity = 1024

    def __init__(self, job: StreamJob) -> None:
        self.job = job
        self.held: dict[int, HeldPartition] = {}
        self.tasks = BackgroundTasks()
        """The partitions' delivery tasks, cancelled in the order they started."""

    async def recover(self) -> None:
        """Adopt the leases this worker still holds and replay their pending batches
        (the partitions side by side, each in order)."""
        config = self.job.config
        store = self.runtime.store
        adopted: list[tuple[int, HeldPartition]] = []
        for lease in await store.leases(keys.lease_prefix(config.name)):
            if lease.owner != self.name:
                continue
            renewed = await store.acquire(lease.key, self.name, config.lease_ttl)
            if renewed is None:
                continue
            partition = keys.partition_from_lease(lease.key)
            held = self.held[partition] = HeldPartition(
                renewed.token, self.job.next_chain(), renewed.expires_at)
            adopted.append((partition, held))
        loop = asyncio.get_running_loop()
        replays = [loop.create_task(self._replay(partition, held)) for partition, held in adopted]
        try:
            await asyncio.gather(*replays)
        finally:  # one failed (the worker crashes with its error): stop the others
            for replay in replays:
                replay.cancel()
        self.send_every(config.lease_ttl / 3.0, Renew())

    async def stopped(self) -> None:
        self.tasks.cancel()
        now = self.runtime.now()
        for partition in self.held:
            self.job.metrics.partition_lost(partition, now)

    async def receive(self, msg: WorkerMsg) -> object:
        match msg:
            case Assign(partition=p, token=token):
                held = self.held.get(p)
                if held is None:
                    expires_at = self.runtime.now() + self.job.config.lease_ttl
                    self.held[p] = HeldPartition(token, self.job.next_chain(), expires_at)
                    self._schedule(p, 0.0)
                else:
                    held.token = token
                    held.lost = ""
            case Revoke(partition=p):
                held = self.held.get(p)
                if held is not None and held.delivering:
                    held.revoked = True  # hand it back once what was delivered is committed
                elif held is not None:
                    await self._release(p, held)
            case Work(partition=p, chain=chain):
                held = self.held.get(p)
                if held is not None and held.chain == chain:
                    held.waiting = False
                    await self._next(p, held)
            case Delivered(partition=p, chain=chain):
                held = self.held.get(p)
                if held is not None and held.chain == chain:
                    await self._delivered(p, held)
            case Renew():
                await self._renew()
        return None

    # -- leases ------------------------------------------------------------

    async def _renew(self) -> None:
        for partition, held in list(self.held.items()):
            why = await self._renewed(partition, held)
            if why and self.held.get(partition) is held:
                if held.delivering:
                    held.lost = why  # the next commit is refused
                else:
                    self._lose(partition, why)

    async def _renewed(self, partition: int, held: HeldPartition) -> str:
        """Renew ``partition``'s lease: ``""`` when still held, else why not."""
        config = self.job.config
        lease = await self.runtime.store.acquire(
            keys.lease_key(config.name, partition), self.name, config.lease_ttl)
        if lease is None:
            return "lease held by another worker"
        held.token = lease.token  # a new token if re-granted after expiry: a new epoch
        held.expires_at = lease.expires_at
        return ""

    async def _lease_checked(self, partition: int, held: HeldPartition) -> bool:
        """The lease is checked before every commit: found lost by a renewal while the
        batch ran, or renewed now when it is due, a worker refuses its own late commit
        (the fenced write would be refused too; this spares the partition the attempt)."""
        why = held.lost
        if not why and held.expires_at - self.runtime.now() < self.job.config.lease_ttl / 3.0:
            why = await self._renewed(partition, held)
        if not why:
            return True
        self.job.metrics.late_commits_refused += 1
        self._lose(partition, f"commit refused: {why}")
        return False

    async def _release(self, partition: int, held: HeldPartition) -> None:
        del self.held[partition]
        await self.runtime.store.release(keys.lease_key(self.job.config.name, partition),
                                         self.name, held.token)

    def _lose(self, partition: int, why: str) -> None:
        if self.held.pop(partition, None) is not None:
            self.job.metrics.leases_lost += 1
            self.runtime.trace.record(self.runtime.now(), "lease_lost", self.name,
                                      f"p{partition}: {why}")
            self.log.warning("lease.lost", partition=partition, reason=why)

    # -- the protocol ------------------------------------------------------

    def _schedule(self, partition: int, delay: float) -> None:
        self.send_after(delay, Work(partition, self.held[partition].chain))

    async def _checkpoint(self, partition: int, held: HeldPartition) -> ChunkBuffer:
        """The buffer at the partition's checkpoint; the pending batches, if any, are
        the window (to be delivered again, in order)."""
        config = self.job.config
        reply = await self.job.partitions[partition].ask(ReadCheckpoint(),
                                                         timeout=config.ask_timeout)
        assert isinstance(reply, CheckpointReply)
        checkpoint = reply.checkpoint
        buffer = ChunkBuffer(keys.log_name(config.name, partition), checkpoint.next_chunk,
                             checkpoint.next_seq)
        held.buffer = buffer
        held.window.clear()
        held.delivered = 0
        for pending in checkpoint.pendings:
            size = pending.last_seq - pending.first_seq + 1
            await self._fill(buffer, size, pending.last_chunk - buffer.read_upto + 1)
            taken = buffer.take(size)
            if (taken is None or (taken.first_seq, taken.last_seq, taken.first_chunk,
                                  taken.last_chunk) != (pending.first_seq, pending.last_seq,
                                                        pending.first_chunk,
                                                        pending.last_chunk)):
                raise ShardlineError(f"partition {partition}: the log does not hold pending "
                                     f"batch {pending.batch_id} in chunks "
                                     f"{pending.first_chunk}..{pending.last_chunk}")
            held.window.append(taken)
            self.job.metrics.redelivered_batches += 1
        return buffer

    async def _fill(self, buffer: ChunkBuffer, wanted: int, chunks: int = 0,
                    from_store: int | None = None) -> None:
        """Read ahead until ``wanted`` records are buffered or the log has no more:
        chunks this process just appended are taken as they are, the rest read from
        the store, but only while fewer than ``from_store`` (default ``wanted``) are
        buffered, or while the last store read found more than it took (a backlog in
        the store: chunks appended before a restart, or by another process, as for a
        cluster node's worker). Past that, growing toward a byte budget, a chunk not
        appended here is left for later: a store read there would mostly ask for a
        chunk not yet appended (on SQLite, a query on the event loop per batch cut)."""
        read = max(chunks, self.job.config.chunks_per_read)
        recent = self.job.recent_chunks
        store_below = wanted if from_store is None else from_store
        while buffer.buffered < wanted:
            found = recent.take(buffer.log, buffer.read_upto)
            if found is not None:
                buffer.add_chunk(*found)
                continue
            if buffer.buffered >= store_below and not buffer.store_ahead:
                return
            entries = await self.runtime.store.read(buffer.log, buffer.read_upto, read)
            buffer.store_ahead = len(entries) >= read
            if not entries:
                return
            buffer.add(entries)

    async def _cut(self, buffer: ChunkBuffer, batches: int) -> list[Slice]:
        """Up to ``batches`` next batches of at most ``batch_size`` records each (more
        with ``max_batch_bytes`` when the partition is backlogged: enough is read ahead
        for each batch to reach the byte budget)."""
        config = self.job.config
        wanted = buffer.fill_target(config.batch_size, config.max_batch_bytes) * batches
        if buffer.buffered < wanted:
            await self._fill(buffer, wanted, from_store=config.batch_size * batches)
        cut: list[Slice] = []
        while len(cut) < batches:
            taken = buffer.take(buffer.batch_limit(config.batch_size, config.max_batch_bytes))
            if taken is None:
                break
            cut.append(taken)
        return cut

    def _pending(self, partition: int, held: HeldPartition,
                 batches: list[Slice]) -> list[PendingCheckpoint]:
        return [PendingCheckpoint(self._bid(partition, b), b.first_seq, b.last_seq, held.token,
                                  b.first_chunk, b.last_chunk) for b in batches]

    async def _replay(self, partition: int, held: HeldPartition) -> None:
        """``recover``: deliver the pending batches again, in order, and commit them,
        before any new message."""
        await self._checkpoint(partition, held)
        for taken in held.window:
            if await self._deliver(partition, held, taken, self._bid(partition, taken)):
                self._retry_later(partition, held)
                return
            held.delivered += 1
        if held.window:
            await self._pump(partition, held)
        else:
            self._schedule(partition, 0.0)

    async def _next(self, partition: int, held: HeldPartition) -> None:
        """Go on: read the checkpoint first if needed; with nothing pending, cut and
        record the next batches; then deliver and commit (``_pump``)."""
        if held.buffer is None:
            await self._checkpoint(partition, held)  # counts the pending replays
            if self.held.get(partition) is not held:
                return
        if not held.window and not held.delivering:
            assert held.buffer is not None
            cut = await self._cut(held.buffer, self.job.config.batches_in_flight)
            if not cut:
                self._schedule(partition, self.job.config.idle_poll)
                return
            recorded = await self.job.partitions[partition].ask(
                RecordPending(held.token, self.name, self._pending(partition, held, cut)),
                timeout=self.job.config.ask_timeout)
            assert isinstance(recorded, CheckpointReply)
            if recorded.refused:
                self._refused(partition, held, recorded.refused)
                return
            held.window.extend(cut)
            await self.fault_point(f"after recording pending batch {self._bid(partition, cut[0])}")
        await self._pump(partition, held)

    async def _pump(self, partition: int, held: HeldPartition) -> None:
        """Start the next delivery; commit what was delivered (in the handler, so a paused
        worker's commit is late, and refused once its lease moved on); when revoked and
        nothing runs, let the partition go."""
        self._start_delivery(partition, held)
        if held.delivered and await self._lease_checked(partition, held) \
                and await self._commit(partition, held):
            self._start_delivery(partition, held)  # the window may have grown
        if held.revoked and not held.delivering and self.held.get(partition) is held:
            await self._release(partition, held)

    def _start_delivery(self, partition: int, held: HeldPartition) -> None:
        if (held.delivering or held.revoked or held.waiting
                or held.delivered >= len(held.window) or self.held.get(partition) is not held):
            return
        held.delivering = True
        taken = held.window[held.delivered]
        bid = self._bid(partition, taken)
        self.tasks.spawn(self._delivery(partition, held, taken, bid), name=f"{self.name} {bid}")

    async def _delivery(self, partition: int, held: HeldPartition, taken: Slice,
                        bid: str) -> None:
        """The delivery task: delivers ``taken``, then the batch after it while the
        window holds one (one at a time, in sequence order), without waiting for the
        handler in between: the handler may be busy committing, for this partition or
        another. Each outcome is queued in ``held.outcomes``, oldest first, and the
        handler woken by a ``Delivered`` (never dropped). The task stops after a failure,
        or when the partition is revoked, lost or no longer this worker's."""
        while True:
            failure = ""
            try:
                failure = await self._deliver(partition, held, taken, bid) or ""
            except Exception as exc:  # not the destination's: the worker crashes on it
                held.crash = exc
                failure = f"{type(exc).__name__}: {exc}"
            if self.held.get(partition) is not held:
                return
            following = None if failure else _following(held, taken)
            held.outcomes.append((bid, failure, following is None))
            if not held.notified:
                held.notified = True
                self.send_after(0.0, Delivered(partition, held.chain, bid, failure))
            if following is None:
                return
            taken, bid = following, self._bid(partition, following)

    async def _delivered(self, partition: int, held: HeldPartition) -> None:
        """Handle the outcomes the delivery task queued, oldest first."""
        held.notified = False
        while held.outcomes and self.held.get(partition) is held:
            bid, failure, last = held.outcomes.popleft()
            await self._outcome(partition, held, bid, failure, last)

    async def _outcome(self, partition: int, held: HeldPartition, bid: str, failure: str,
                       last: bool) -> None:
        if last:
            held.delivering = False
            if held.crash is not None:
                crash, held.crash = held.crash, None
                raise crash
        if held.delivered >= len(held.window) \
                or self._bid(partition, held.window[held.delivered]) != bid:
            await self._pump(partition, held)  # not the next batch's: carry on from it
            return
        if failure:
            if held.revoked:
                await self._pump(partition, held)  # commit what was delivered, let go
            else:
                self._retry_later(partition, held)
            return
        held.delivered += 1
        held.retries = 0
        await self.fault_point(f"after delivering batch {bid}")
        await self._pump(partition, held)

    async def _commit(self, partition: int, held: HeldPartition) -> bool:
        """Commit (fenced) the batches delivered so far, recording as many newly cut
        batches as pending as keep ``batches_in_flight`` pending; says whether it was
        applied (a refusal loses the partition or re-reads the checkpoint)."""
        config = self.job.config
        assert held.buffer is not None
        count = held.delivered
        done = list(itertools.islice(held.window, count))
        room = config.batches_in_flight - (len(held.window) - count)
        cut = [] if held.revoked or room < 1 else await self._cut(held.buffer, room)
        last = done[-1]
        reply = await self.job.partitions[partition].ask(
            CommitBatch(self._bid(partition, last), done[0].first_seq, last.last_seq,
                        held.token, self.name, last.next_chunk,
                        self._pending(partition, held, cut)),
            timeout=config.ask_timeout)
        assert isinstance(reply, CheckpointReply)
        if reply.refused:
            self.job.metrics.late_commits_refused += 1
            self._refused(partition, held, f"commit refused: {reply.refused}")
            return False
        for _ in range(count):
            held.window.popleft()
        held.delivered -= count
        held.window.extend(cut)
        if self.held.get(partition) is not held:
            return False
        if cut:
            await self.fault_point(f"after recording pending batch {self._bid(partition, cut[0])}")
        if not held.window and not held.revoked:
            self._schedule(partition, config.idle_poll)
        return True

    def _refused(self, partition: int, held: HeldPartition, why: str) -> None:
        """A fenced write was refused: a stale token loses the partition; anything else
        (the cached checkpoint is behind the partition's) re-reads the checkpoint."""
        if "stale fencing token" in why or self.held.get(partition) is not held:
            self._lose(partition, why)
            return
        held.buffer = None
        held.window.clear()
        held.delivered = 0
        self.log.info("checkpoint.reread", partition=partition, reason=why)
        self._schedule(partition, 0.0)

    def _retry_later(self, partition: int, held: HeldPartition) -> None:
        """The destination failed: the same batch is delivered again after a backoff."""
        self.job.metrics.redelivered_batches += 1
        delay = self.job.config.retry_backoff.delay(held.retries, self.random.random())
        held.retries += 1
        if self.held.get(partition) is held:
            held.waiting = True
            self._schedule(partition, delay)

    def _bid(self, partition: int, taken: Slice) -> str:
        return batch_id(self.job.config.name, partition, taken.first_seq, taken.last_seq)

    async def _deliver(self, partition: int, held: HeldPartition, taken: Slice,
                       bid: str) -> str | None:
        """Process and deliver ``taken``; ``None`` when the destination took it, else why not."""
        job = self.job
        config = job.config
        first, last = taken.first_seq, taken.last_seq
        if job.processes:
            batch = Batch.of_records(bid, partition, first, last, job.process_records(list(map(
                Record, range(first, last + 1), taken.keys, taken.payloads))))
        else:  # passed through: no object per record
            batch = Batch(bid, partition, first, last, list(range(first, last + 1)),
                          taken.keys, taken.payloads)
        if config.batch_cost > 0:
            await asyncio.sleep(config.batch_cost)
            await self.fault_point(f"while processing batch {bid}")
        try:
            if self.runtime.faults.fire("destination_error", f"{self.name}.destination"):
                raise DestinationError(f"injected destination failure for {bid}")
            await job.destination.deliver(batch)
        except Exception as exc:
            job.metrics.destination_failures += 1
            self.log.warning("destination.failed", batch=bid, attempt=held.retries,
                             error=f"{type(exc).__name__}: {exc}")
            return f"{type(exc).__name__}: {exc}"
        job.metrics.on_delivery(batch)
        return None


def _following(held: HeldPartition, taken: Slice) -> Slice | None:
    """The batch after ``taken`` in the window, if the delivery task may go on to it."""
    if held.revoked or held.lost or held.waiting:
        return None
    window = held.window
    for index, pending in enumerate(window):
        if pending is taken:
            return window[index + 1] if index + 1 < len(window) else None
    return None  # the window was re-read (a refusal): the handler starts afresh
