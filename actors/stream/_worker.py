"""The stream worker: the pending-checkpoint protocol, one batch per message.

For a partition it holds under a lease, a worker

1. reads the checkpoint (from the partition actor, its single writer);
2. with **no pending checkpoint**: picks the next ``batch_size`` records
   after the committed sequence and durably records a pending checkpoint
   naming exactly that range (fenced by its lease token);
   with **a pending checkpoint**: takes exactly the named range again;
3. processes the records and delivers them under the deterministic batch id;
4. commits (fenced), which advances the checkpoint past the batch.

A crash anywhere leaves either nothing (before 2: the range is chosen
again) or the pending checkpoint (after 2: ``recover`` replays exactly that
batch before any new message). A destination failure keeps the batch
pending and retries it with backoff; nothing is skipped. A worker whose
lease was taken over finds its pending write or commit refused (stale
fencing token) and lets the partition go.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import msgspec

from actors.stream import _keys as keys
from actors.stream._messages import (
    Assign,
    CommitBatch,
    ReadCheckpoint,
    RecordPending,
    Renew,
    Revoke,
    Work,
    WorkerMsg,
)
from actors.stream._partition import CheckpointReply
from actors.stream._records import Batch, Chunk, batch_id
from runtime import Actor, ShardlineError

_decode_chunk = msgspec.msgpack.Decoder(Chunk).decode

if TYPE_CHECKING:
    from actors.stream._job import StreamJob


class DestinationError(ShardlineError):
    """The destination refused a batch (injected ``destination_error`` or a real failure)."""


class Worker(Actor[WorkerMsg]):
    mailbox_capacity = 1024

    def __init__(self, job: StreamJob) -> None:
        self.job = job
        self.held: dict[int, int] = {}
        self.retries: dict[int, int] = {}
        self.chains: dict[int, int] = {}

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
            self.held[partition] = renewed.token
            self.chains[partition] = self.job.next_chain()
            await self._step(partition, replay_only=True)
            self._schedule(partition, 0.0)
        self.send_every(config.lease_ttl / 3.0, Renew())

    async def stopped(self) -> None:
        now = self.runtime.now()
        for partition in self.held:
            self.job.metrics.partition_lost(partition, now)

    async def receive(self, msg: WorkerMsg) -> object:
        match msg:
            case Assign(partition=p, token=token):
                fresh = p not in self.held
                self.held[p] = token
                if fresh:
                    self.chains[p] = self.job.next_chain()
                    self._schedule(p, 0.0)
            case Revoke(partition=p):
                self.chains.pop(p, None)
                if p in self.held:
                    await self.runtime.store.release(
                        keys.lease_key(self.job.config.name, p), self.name, self.held.pop(p))
            case Work(partition=p, chain=chain):
                if p in self.held and self.chains.get(p) == chain:
                    await self._step(p, replay_only=False)
            case Renew():
                await self._renew()
        return None

    async def _renew(self) -> None:
        config = self.job.config
        for partition, token in list(self.held.items()):
            lease = await self.runtime.store.acquire(
                keys.lease_key(config.name, partition), self.name, config.lease_ttl)
            if lease is None:
                self._lose(partition, "lease held by another worker")
            elif lease.token != token:
                self.held[partition] = lease.token  # re-granted after expiry: a new epoch

    def _schedule(self, partition: int, delay: float) -> None:
        self.send_after(delay, Work(partition, self.chains[partition]))

    def _lose(self, partition: int, why: str) -> None:
        self.chains.pop(partition, None)
        if self.held.pop(partition, None) is not None:
            self.job.metrics.leases_lost += 1
            self.runtime.trace.record(self.runtime.now(), "lease_lost", self.name,
                                      f"p{partition}: {why}")
            self.log.warning("lease.lost", partition=partition, reason=why)

    async def _step(self, partition: int, *, replay_only: bool) -> None:
        """One batch of ``partition``: replay the pending one, or start the next."""
        job = self.job
        config = job.config
        token = self.held[partition]
        part = job.partitions[partition]
        reply = await part.ask(ReadCheckpoint(), timeout=config.ask_timeout)
        assert isinstance(reply, CheckpointReply)
        pending = reply.checkpoint.pending
        log = keys.log_name(config.name, partition)
        if pending is not None:
            first, last, bid = pending.first_seq, pending.last_seq, pending.batch_id
            job.metrics.redelivered_batches += 1
            chunks = await self._read_chunks(log, pending.first_chunk,
                                             pending.last_chunk - pending.first_chunk + 1)
        elif replay_only:
            return
        else:
            checkpoint = reply.checkpoint
            entries = await self.runtime.store.read(log, checkpoint.next_chunk,
                                                    config.chunks_per_read)
            if not entries:
                self._schedule(partition, config.idle_poll)
                return
            chunks = []
            count = 0
            for entry in entries:  # decode only the chunks this batch takes
                chunk = _decode_chunk(entry.payload)
                if count and count + len(chunk.keys) > config.batch_size:
                    break
                chunks.append(chunk)
                count += len(chunk.keys)
            taken = len(chunks)
            first = checkpoint.next_seq
            last = first + count - 1
            if chunks[0].first_seq != first:
                raise ShardlineError(f"partition {partition}: chunk {checkpoint.next_chunk} "
                                     f"starts at seq {chunks[0].first_seq}, expected {first}")
            bid = batch_id(config.name, partition, first, last)
            recorded = await part.ask(
                RecordPending(bid, first, last, token, self.name, checkpoint.next_chunk,
                              checkpoint.next_chunk + taken - 1),
                timeout=config.ask_timeout)
            assert isinstance(recorded, CheckpointReply)
            if recorded.refused:
                self._lose(partition, recorded.refused)
                return
            await self.fault_point(f"after recording pending batch {bid}")
        if not await self._deliver(partition, first, last, bid, chunks):
            return
        await self.fault_point(f"after delivering batch {bid}")
        committed = await part.ask(CommitBatch(bid, first, last, token, self.name),
                                   timeout=config.ask_timeout)
        assert isinstance(committed, CheckpointReply)
        if committed.refused:
            self.job.metrics.late_commits_refused += 1
            self._lose(partition, f"commit refused: {committed.refused}")
            return
        self.retries.pop(partition, None)
        if not replay_only:
            self._schedule(partition, 0.0)

    async def _read_chunks(self, log: str, first_chunk: int, count: int) -> list[Chunk]:
        entries = await self.runtime.store.read(log, first_chunk, count)
        return [_decode_chunk(entry.payload) for entry in entries]

    async def _deliver(self, partition: int, first: int, last: int, bid: str,
                       chunks: list[Chunk]) -> bool:
        """Process and deliver ``first..last``; on failure schedule a retry and say False."""
        job = self.job
        config = job.config
        raw = [record for chunk in chunks for record in chunk.records()]
        if not raw or raw[0].seq != first or raw[-1].seq != last:
            raise ShardlineError(
                f"partition {partition}: chunks hold {raw[0].seq if raw else '-'}.."
                f"{raw[-1].seq if raw else '-'}, batch {bid} needs {first}..{last}")
        records = job.process_records(raw)
        if config.batch_cost > 0:
            await asyncio.sleep(config.batch_cost)
            await self.fault_point(f"while processing batch {bid}")
        batch = Batch(bid, partition, first, last, records)
        try:
            if self.runtime.faults.fire("destination_error", f"{self.name}.destination"):
                raise DestinationError(f"injected destination failure for {bid}")
            await job.destination.deliver(batch)
        except Exception as exc:
            attempt = self.retries.get(partition, 0)
            self.retries[partition] = attempt + 1
            delay = config.retry_backoff.delay(attempt, self.random.random())
            job.metrics.destination_failures += 1
            self.log.warning("destination.failed", batch=bid, attempt=attempt,
                             retry_in=round(delay, 6), error=f"{type(exc).__name__}: {exc}")
            if partition in self.chains:
                self._schedule(partition, delay)
            return False
        job.metrics.on_delivery(batch)
        return True
