"""The partition actor: single writer of its partition's log and checkpoint.

Every checkpoint write is a compare-and-set on the version this actor last
wrote, and carries the worker's fencing token, so two workers can never
both advance a partition: a write under a stale token is refused by the
store (``StaleFencingToken``) and reported back to the worker as a refusal,
not raised here (a stale worker must not crash the partition).

Retention: a commit also truncates, in the same fenced write, the chunks
below the new checkpoint's chunk and the commit records that are older
than ``retention`` (a pending batch starts at the checkpoint, so it is
never truncated). Ages are kept in memory as appends and commits happen;
after a restart the entries already there count as appended at the
restart, so retention is never early, at most one period late. Entries
about to be dropped go to the job's audit first (``runtime.scenario.Audit``).
"""

from __future__ import annotations

import operator
from collections import deque
from typing import TYPE_CHECKING

import msgspec

from actors.stream import _keys as keys
from actors.stream._messages import (
    AppendBatch,
    CommitBatch,
    PartitionMsg,
    ReadCheckpoint,
    RecordPending,
)
from actors.stream._records import (
    Checkpoint,
    Chunk,
    CommitRecord,
    PendingCheckpoint,
    ProducerPosition,
)
from runtime import Actor, ConflictError, ShardlineError, StaleFencingToken
from runtime.scenario import audit_before_truncating
from runtime.store import Append, Fence, Put, Truncate, WriteResult

if TYPE_CHECKING:
    from actors.stream._job import StreamJob

_encode = msgspec.msgpack.Encoder().encode
_key_of = operator.itemgetter(0)
_payload_of = operator.itemgetter(1)
_decode_checkpoint = msgspec.msgpack.Decoder(Checkpoint).decode
_decode_position = msgspec.msgpack.Decoder(ProducerPosition).decode


class CheckpointReply(msgspec.Struct, frozen=True):
    """The checkpoint after a request, or why the request was refused."""

    checkpoint: Checkpoint
    refused: str = ""


class Partition(Actor[PartitionMsg]):
    mailbox_capacity = 256

    def __init__(self, job: StreamJob, partition: int) -> None:
        self.job = job
        self.partition = partition
        stream = job.config.name
        self.log_name = keys.log_name(stream, partition)
        self.checkpoint_key = keys.checkpoint_key(stream, partition)
        self.producer_key = keys.producer_key(stream, partition)
        self.commits_log = keys.commits_log(stream, partition)
        self.lease_key = keys.lease_key(stream, partition)

    async def recover(self) -> None:
        """Reload the durable state: whatever this actor cached may be stale after a crash."""
        store = self.runtime.store
        found = await store.get(self.checkpoint_key)
        self.checkpoint = _decode_checkpoint(found.value) if found else Checkpoint()
        self.checkpoint_version = found.version if found else 0
        self.floors = {log: await store.floor(log) for log in (self.log_name, self.commits_log)}
        now = self.runtime.now()
        self.ages: dict[str, deque[tuple[int, float]]] = {
            log: deque([(await store.high_water(log), now)])
            for log in (self.log_name, self.commits_log)}
        """Per log, ``(end, time)`` in ``end`` order: entries below ``end`` existed at ``time``."""
        found_position = await store.get(self.producer_key)
        position = (_decode_position(found_position.value) if found_position
                    else ProducerPosition(0, 0))
        self.producer_upto = position.upto
        self.next_seq = position.next_seq
        self.producer_version = found_position.version if found_position else 0

    async def receive(self, msg: PartitionMsg) -> object:
        match msg:
            case AppendBatch():
                return await self._append(msg)
            case ReadCheckpoint():
                return CheckpointReply(self.checkpoint)
            case RecordPending():
                return await self._record_pending(msg)
            case CommitBatch():
                return await self._commit(msg)
        return None

    async def _append(self, msg: AppendBatch) -> int:
        """Store the items of ``msg`` not yet held, with the new producer position.

        Refuses (``ShardlineError``) an append that would leave a gap or hold
        items this partition already has: the producer starts each append at
        the position this partition last stored.
        """
        if msg.upto <= self.producer_upto:
            return 0
        if msg.first != self.producer_upto:
            raise ShardlineError(f"{self.name}: append of source items {msg.first}.."
                                 f"{msg.upto - 1}, the partition holds those below "
                                 f"{self.producer_upto}")
        entries = msg.entries
        fresh = len(entries)
        next_seq = self.next_seq + fresh
        ops: list[Append | Put] = []
        chunk: Chunk | None = None
        encoded = b""
        if entries:
            chunk = Chunk(self.next_seq, list(map(_key_of, entries)),
                          list(map(_payload_of, entries)))
            encoded = _encode(chunk)
            ops.append(Append(self.log_name, [("", encoded)]))
        ops.append(Put(self.producer_key, _encode(ProducerPosition(msg.upto, next_seq)),
                       self.producer_version))
        result = await self.runtime.store.write(ops)
        if chunk is not None:
            seq = result.first_seqs[self.log_name]
            self.ages[self.log_name].append((seq + 1, self.runtime.now()))
            self.job.recent_chunks.put(self.log_name, seq, chunk, len(encoded))
        self.producer_upto = msg.upto
        self.next_seq = next_seq
        self.producer_version = result.versions[self.producer_key]
        self.job.metrics.produced += fresh
        return fresh

    async def _record_pending(self, msg: RecordPending) -> CheckpointReply:
        """Record ``msg.batches`` as pending, when none is: consecutive from the checkpoint.

        A repeat of the request that recorded them (same ids, same token) is
        answered as applied, so a worker retrying it after a lost reply goes on.
        """
        current = self.checkpoint
        if current.pending is not None:
            if ([b.batch_id for b in current.pendings] == [b.batch_id for b in msg.batches]
                    and current.pending.token == msg.token):
                return CheckpointReply(current)
            return CheckpointReply(current, f"pending batch {current.pending.batch_id} exists")
        if not msg.batches:
            return CheckpointReply(current, "no batch to record")
        first = msg.batches[0]
        if first.first_seq != current.next_seq:
            return CheckpointReply(current, f"batch starts at {first.first_seq}, "
                                            f"checkpoint is at {current.next_seq}")
        if first.first_chunk != current.next_chunk:
            return CheckpointReply(current, f"batch starts at chunk {first.first_chunk}, "
                                            f"checkpoint is at chunk {current.next_chunk}")
        gap = _unchained(first, msg.batches[1:])
        if gap:
            return CheckpointReply(current, gap)
        return await self._write(Checkpoint(current.next_seq, first, current.next_chunk,
                                            msg.batches[1:]), msg.token, [])

    async def _commit(self, msg: CommitBatch) -> CheckpointReply:
        """Advance past the pending batches up to ``msg.batch_id`` (oldest first), recording
        ``msg.next_pending`` after the ones that stay pending, in the same write.

        The new batches must continue the pending ranges without a gap, so the
        checkpoint still names exactly the records that will be processed next.
        Each committed batch gets its own commit record (in order, in this write).
        """
        pendings = self.checkpoint.pendings
        ids = [b.batch_id for b in pendings]
        if msg.batch_id not in ids or pendings[0].first_seq != msg.first_seq:
            return CheckpointReply(self.checkpoint, f"no pending batch {msg.batch_id} "
                                                    f"from seq {msg.first_seq}")
        count = ids.index(msg.batch_id) + 1
        done, staying = pendings[:count], pendings[count:]
        last = done[-1]
        if last.last_seq != msg.last_seq \
                or not last.last_chunk <= msg.next_chunk <= last.last_chunk + 1:
            return CheckpointReply(self.checkpoint, f"batch {msg.batch_id} ends at seq "
                                                    f"{last.last_seq} in chunk "
                                                    f"{last.last_chunk}, not at {msg.last_seq} "
                                                    f"before chunk {msg.next_chunk}")
        then = [*staying, *msg.next_pending]
        if then and not staying and (then[0].first_seq != msg.last_seq + 1
                                     or then[0].first_chunk != msg.next_chunk):
            return CheckpointReply(self.checkpoint, f"next batch {then[0].batch_id} does not "
                                                    f"start after {msg.batch_id}")
        gap = _unchained(then[0], then[1:]) if then else ""
        if gap:
            return CheckpointReply(self.checkpoint, gap)
        records = [(b.batch_id, _encode(CommitRecord(b.batch_id, b.first_seq, b.last_seq,
                                                     msg.token, msg.owner))) for b in done]
        extra: list[Append | Truncate] = [Append(self.commits_log, records)]
        extra += await self._expired(msg.next_chunk)
        new = Checkpoint(msg.last_seq + 1, then[0] if then else None, msg.next_chunk, then[1:])
        reply = await self._write(new, msg.token, extra)
        if not reply.refused:
            result = self.last_write
            for log, floor in result.floors.items():
                self.floors[log] = floor
                ages = self.ages[log]
                while ages and ages[0][0] <= floor:
                    ages.popleft()
            self.ages[self.commits_log].append((result.first_seqs[self.commits_log]
                                                + len(records), self.runtime.now()))
            now = self.runtime.now()
            for batch in done:
                self.job.metrics.on_commit(self.partition,
                                           batch.last_seq - batch.first_seq + 1, now)
        return reply

    async def _expired(self, next_chunk: int) -> list[Truncate]:
        """Truncations of what is older than ``retention``: chunks below ``next_chunk``
        (the committed checkpoint after this commit), and commit records. What they drop
        is handed to the audit first."""
        cutoff = self.runtime.now() - self.job.config.retention
        caps = {self.log_name: next_chunk, self.commits_log: None}
        ops: list[Truncate] = []
        for log, cap in caps.items():
            target = self.floors[log]
            for end, at in self.ages[log]:  # dropped from ages once the truncation commits
                if at > cutoff:
                    break
                target = max(target, end if cap is None else min(end, cap))
                if cap is not None and end > cap:
                    break  # the rest of this span is not yet committed
            if target > self.floors[log]:
                await audit_before_truncating(self.runtime.store, self.job.audit, log,
                                              self.floors[log], target)
                ops.append(Truncate(log, target))
        return ops

    async def _write(self, new: Checkpoint, token: int,
                     extra: list[Append | Truncate]) -> CheckpointReply:
        """Compare-and-set the checkpoint under the worker's fencing token.

        Invariant kept here: a checkpoint write under a stale fencing token is
        refused (the store checks the token in the same transaction).
        """
        put = Put(self.checkpoint_key, _encode(new), self.checkpoint_version)
        try:
            result = await self.runtime.store.write(
                [put, *extra], fence=Fence(self.lease_key, token))
        except StaleFencingToken as exc:
            self.job.metrics.stale_refused += 1
            self.runtime.trace.record(self.runtime.now(), "stale_write_refused", self.name,
                                      f"token {token}")
            return CheckpointReply(self.checkpoint, f"stale fencing token: {exc}")
        except ConflictError as exc:
            await self.recover()
            return CheckpointReply(self.checkpoint, f"conflict: {exc}")
        self.checkpoint = new
        self.last_write: WriteResult = result
        self.checkpoint_version = result.versions[self.checkpoint_key]
        if extra:
            self.runtime.trace.record(self.runtime.now(), "checkpoint_committed", self.name,
                                      str(new.next_seq))
        if new.pending is not None:
            self.runtime.trace.record(self.runtime.now(), "checkpoint_pending", self.name,
                                      new.pending.batch_id)
        return reply_ok(new)


def _unchained(first: PendingCheckpoint, rest: list[PendingCheckpoint]) -> str:
    """Why ``first, *rest`` are not consecutive ranges of consecutive chunks ("" if they are)."""
    previous = first
    for batch in rest:
        if batch.first_seq != previous.last_seq + 1 \
                or not previous.last_chunk <= batch.first_chunk <= previous.last_chunk + 1:
            return (f"pending batch {batch.batch_id} does not start after "
                    f"{previous.batch_id}")
        previous = batch
    return ""


def reply_ok(checkpoint: Checkpoint) -> CheckpointReply:
    return CheckpointReply(checkpoint)
