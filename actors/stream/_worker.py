"""The stream worker: the pending-checkpoint protocol for the partitions it leases.

For a partition it holds under a lease, a worker

1. reads the checkpoint once (from the partition actor, its single writer)
   and keeps it, with the partition's log read ahead (``ChunkBuffer``);
2. with **a pending checkpoint**: takes exactly the named range again;
   with **none**: cuts the next at most ``batch_size`` records and durably
   records a pending checkpoint naming exactly that range (fenced by its
   lease token);
3. processes the batch and delivers it under the deterministic batch id;
4. commits (fenced), which advances the checkpoint past the batch, and in
   the same write records the next batch as pending when one is buffered
   (so one write per batch, and still a pending checkpoint naming exactly
   the next range before it is processed); then back to 3, or to 2.

A crash anywhere leaves either nothing (before 2: the range is chosen
again) or the pending checkpoint (after 2 or 4: ``recover`` replays exactly
that batch before any new message). A destination failure keeps the batch
pending and retries it with backoff; nothing is skipped. A worker whose
lease was taken over finds its pending write or commit refused (stale
fencing token) and lets the partition go.

Processing and delivery (step 3) run in a task of their own, not in the
message handler: a worker's partitions deliver concurrently, and a batch
that takes longer than the lease TTL does not hold up ``Renew`` (liveness:
the lease is renewed every ``lease_ttl / 3`` while the batch runs, and
checked again before the commit). An actor that stalls as a whole (a
``pause``) stops renewing, so its partitions move to another worker and
its late commit is refused, as for a stalled process.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from actors.stream import _keys as keys
from actors.stream._buffer import ChunkBuffer, Slice
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
from runtime import Actor, ShardlineError

if TYPE_CHECKING:
    from actors.stream._job import StreamJob


class DestinationError(ShardlineError):
    """The destination refused a batch (injected ``destination_error`` or a real failure)."""


class HeldPartition:
    """What a worker keeps about one partition it leases (lost with the lease or a crash).

    ``buffer`` is ``None`` until the checkpoint was read; ``current`` is the
    batch recorded as pending and not yet committed, ``delivering`` says its
    delivery task runs (the partition is let go only after it ends).
    """

    __slots__ = ("buffer", "chain", "crash", "current", "delivering", "expires_at", "lost",
                 "retries", "revoked", "token")

    def __init__(self, token: int, chain: int, expires_at: float) -> None:
        self.token = token
        self.chain = chain
        self.expires_at = expires_at
        self.buffer: ChunkBuffer | None = None
        self.current: Slice | None = None
        self.delivering = False
        self.retries = 0
        self.crash: BaseException | None = None
        self.lost = ""
        """Why the lease was found lost while a delivery ran: its commit is refused."""
        self.revoked = False
        """Asked to hand the partition back: after the running delivery commits."""


class Worker(Actor[WorkerMsg]):
    mailbox_capacity = 1024

    def __init__(self, job: StreamJob) -> None:
        self.job = job
        self.held: dict[int, HeldPartition] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    async def recover(self) -> None:
        """Adopt the leases this worker still holds and replay their pending batches."""
        config = self.job.config
        store = self.runtime.store
        for lease in await store.leases(keys.lease_prefix(config.name)):
            if lease.owner != self.name:
                continue
            renewed = await store.acquire(lease.key, self.name, config.lease_ttl)
            if renewed is None:
                continue
            partition = keys.partition_from_lease(lease.key)
            held = self.held[partition] = HeldPartition(
                renewed.token, self.job.next_chain(), renewed.expires_at)
            await self._replay(partition, held)
        self.send_every(config.lease_ttl / 3.0, Renew())

    async def stopped(self) -> None:
        for task in self.tasks:
            task.cancel()
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
                    held.revoked = True  # hand it back once this batch is committed
                elif held is not None:
                    await self._release(p, held)
            case Work(partition=p, chain=chain):
                held = self.held.get(p)
                if held is not None and held.chain == chain and not held.delivering:
                    await self._next(p, held)
            case Delivered(partition=p, chain=chain):
                held = self.held.get(p)
                if held is not None and held.chain == chain:
                    await self._delivered(p, held, msg)
            case Renew():
                await self._renew()
        return None

    # -- leases ------------------------------------------------------------

    async def _renew(self) -> None:
        for partition, held in list(self.held.items()):
            why = await self._renewed(partition, held)
            if why and self.held.get(partition) is held:
                if held.delivering:
                    held.lost = why  # its delivery's commit will be refused
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
        """The buffer at the partition's checkpoint; the pending batch, if any, is current."""
        config = self.job.config
        reply = await self.job.partitions[partition].ask(ReadCheckpoint(),
                                                         timeout=config.ask_timeout)
        assert isinstance(reply, CheckpointReply)
        checkpoint = reply.checkpoint
        buffer = ChunkBuffer(keys.log_name(config.name, partition), checkpoint.next_chunk,
                             checkpoint.next_seq)
        held.buffer = buffer
        held.current = None
        pending = checkpoint.pending
        if pending is not None:
            await self._fill(buffer, pending.last_seq - pending.first_seq + 1,
                             pending.last_chunk - pending.first_chunk + 1)
            taken = buffer.take(pending.last_seq - pending.first_seq + 1)
            if (taken is None or (taken.first_seq, taken.last_seq, taken.first_chunk,
                                  taken.last_chunk) != (pending.first_seq, pending.last_seq,
                                                        pending.first_chunk,
                                                        pending.last_chunk)):
                raise ShardlineError(f"partition {partition}: the log does not hold pending "
                                     f"batch {pending.batch_id} in chunks "
                                     f"{pending.first_chunk}..{pending.last_chunk}")
            held.current = taken
            self.job.metrics.redelivered_batches += 1
        return buffer

    async def _fill(self, buffer: ChunkBuffer, wanted: int, chunks: int = 0) -> None:
        """Read ahead until ``wanted`` records are buffered or the log has no more."""
        read = max(chunks, self.job.config.chunks_per_read)
        while buffer.buffered < wanted:
            entries = await self.runtime.store.read(buffer.log, buffer.read_upto, read)
            if not entries:
                return
            buffer.add(entries)

    async def _cut(self, buffer: ChunkBuffer) -> Slice | None:
        limit = self.job.config.batch_size
        if buffer.buffered < limit:
            await self._fill(buffer, limit)
        return buffer.take(limit)

    async def _replay(self, partition: int, held: HeldPartition) -> None:
        """``recover``: deliver and commit the pending batch before any new message."""
        await self._checkpoint(partition, held)
        taken = held.current
        if taken is None:
            self._schedule(partition, 0.0)
        elif await self._deliver(partition, held, taken, self._bid(partition, taken)) is not None:
            self._retry_later(partition, held)
        elif await self._commit(partition, held, taken, self._bid(partition, taken)):
            self._schedule(partition, 0.0)  # the next batch is pending: deliver it

    async def _next(self, partition: int, held: HeldPartition) -> None:
        """Start the next delivery: the pending batch again, or a new one recorded first."""
        buffer = held.buffer
        if buffer is None:
            buffer = await self._checkpoint(partition, held)  # counts a pending replay
            if self.held.get(partition) is not held:
                return
        if held.current is None:
            taken = await self._cut(buffer)
            if taken is None:
                self._schedule(partition, self.job.config.idle_poll)
                return
            bid = self._bid(partition, taken)
            recorded = await self.job.partitions[partition].ask(
                RecordPending(bid, taken.first_seq, taken.last_seq, held.token, self.name,
                              taken.first_chunk, taken.last_chunk),
                timeout=self.job.config.ask_timeout)
            assert isinstance(recorded, CheckpointReply)
            if recorded.refused:
                self._refused(partition, held, recorded.refused)
                return
            held.current = taken
            await self.fault_point(f"after recording pending batch {bid}")
        self._start_delivery(partition, held)

    def _start_delivery(self, partition: int, held: HeldPartition) -> None:
        taken = held.current
        assert taken is not None
        held.delivering = True
        bid = self._bid(partition, taken)
        task = asyncio.get_running_loop().create_task(
            self._delivery(partition, held, taken, bid), name=f"{self.name} {bid}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _delivery(self, partition: int, held: HeldPartition, taken: Slice,
                        bid: str) -> None:
        """The delivery task: its outcome comes back as ``Delivered`` (never dropped)."""
        failure = ""
        try:
            failure = await self._deliver(partition, held, taken, bid) or ""
        except Exception as exc:  # not the destination's: the worker crashes on it
            held.crash = exc
            failure = f"{type(exc).__name__}: {exc}"
        if self.held.get(partition) is held:
            self.send_after(0.0, Delivered(partition, held.chain, bid, failure))

    async def _delivered(self, partition: int, held: HeldPartition, msg: Delivered) -> None:
        held.delivering = False
        taken = held.current
        if taken is None or self._bid(partition, taken) != msg.batch_id:
            self._schedule(partition, 0.0)  # not the current batch's: carry on from it
            return
        if held.crash is not None:
            crash, held.crash = held.crash, None
            raise crash
        if msg.failure:
            if held.revoked:
                await self._release(partition, held)
            else:
                self._retry_later(partition, held)
            return
        await self.fault_point(f"after delivering batch {msg.batch_id}")
        if not await self._lease_checked(partition, held):
            return
        if await self._commit(partition, held, taken, msg.batch_id):
            self._start_delivery(partition, held)

    async def _commit(self, partition: int, held: HeldPartition, taken: Slice,
                      bid: str) -> bool:
        """Commit ``taken`` (fenced), recording the next buffered batch as pending.

        Says whether a next batch is now pending (its delivery is to start);
        otherwise the next ``Work`` is scheduled, or the partition was let go.
        """
        config = self.job.config
        assert held.buffer is not None
        then = None if held.revoked else await self._cut(held.buffer)
        next_pending = None if then is None else PendingCheckpoint(
            self._bid(partition, then), then.first_seq, then.last_seq, held.token,
            then.first_chunk, then.last_chunk)
        committed = await self.job.partitions[partition].ask(
            CommitBatch(bid, taken.first_seq, taken.last_seq, held.token, self.name,
                        taken.next_chunk, next_pending),
            timeout=config.ask_timeout)
        assert isinstance(committed, CheckpointReply)
        if committed.refused:
            self.job.metrics.late_commits_refused += 1
            self._refused(partition, held, f"commit refused: {committed.refused}")
            return False
        held.retries = 0
        held.current = then
        if self.held.get(partition) is not held:
            return False
        if held.revoked:
            await self._release(partition, held)
            return False
        if then is None:
            self._schedule(partition, config.idle_poll)
            return False
        await self.fault_point(f"after recording pending batch {next_pending.batch_id}"
                               if next_pending else "")
        return True

    def _refused(self, partition: int, held: HeldPartition, why: str) -> None:
        """A fenced write was refused: a stale token loses the partition; anything else
        (the cached checkpoint is behind the partition's) re-reads the checkpoint."""
        if "stale fencing token" in why or self.held.get(partition) is not held:
            self._lose(partition, why)
            return
        held.buffer = None
        held.current = None
        self.log.info("checkpoint.reread", partition=partition, reason=why)
        self._schedule(partition, 0.0)

    def _retry_later(self, partition: int, held: HeldPartition) -> None:
        """The destination failed: the same batch is delivered again after a backoff."""
        self.job.metrics.redelivered_batches += 1
        delay = self.job.config.retry_backoff.delay(held.retries, self.random.random())
        held.retries += 1
        if self.held.get(partition) is held:
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
