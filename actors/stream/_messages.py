"""The stream protocols: one tagged union per actor."""

from __future__ import annotations

from actors.stream._records import PendingCheckpoint
from runtime import Message, Terminated


class AppendBatch(Message, frozen=True):
    """Producer -> partition: the source items with index in ``first..upto - 1`` that
    hash here, as ``(key, payload)`` in source order.

    The partition stores ``upto`` in the same transaction as the records. It
    holds every item below its stored ``upto``, so an append ending at or
    below it is a repeat and is dropped; the producer starts ``first`` at the
    partition's stored ``upto`` (read when it recovers), so nothing is skipped
    or repeated across restarts.
    """

    first: int
    upto: int
    entries: list[tuple[str, bytes]]


class ReadCheckpoint(Message, frozen=True):
    """Worker -> partition: the current checkpoint (authoritative: the partition writes it)."""


class RecordPending(Message, frozen=True):
    """Worker -> partition: durably name ``batches`` (consecutive ranges from the
    checkpoint on) before processing them; only when none is pending."""

    token: int
    owner: str
    batches: list[PendingCheckpoint]


class CommitBatch(Message, frozen=True):
    """Worker -> partition: the pending batches up to ``batch_id`` were delivered;
    advance past them.

    They hold ``first_seq..last_seq``; ``next_chunk`` is the chunk holding
    ``last_seq + 1`` (a batch may end inside a chunk). ``next_pending`` are
    recorded as pending in the same fenced write, after the batches that stay
    pending (consecutive ranges): one write per commit instead of a commit and
    a pending write, and the checkpoint still names exactly the records that
    will be processed next.
    """

    batch_id: str
    first_seq: int
    last_seq: int
    token: int
    owner: str
    next_chunk: int
    next_pending: list[PendingCheckpoint] = []


PartitionMsg = AppendBatch | ReadCheckpoint | RecordPending | CommitBatch


class Assign(Message, frozen=True):
    """Coordinator -> worker: you hold ``partition`` under fencing ``token``."""

    partition: int
    token: int


class Revoke(Message, frozen=True):
    """Coordinator -> worker: hand ``partition`` back (rebalancing)."""

    partition: int


class Work(Message, frozen=True):
    """Worker -> itself: process the next batch of ``partition``.

    ``chain`` identifies the worker incarnation's processing loop for the
    partition; Work left in the mailbox by an earlier incarnation (the
    mailbox survives restarts) carries an old chain and is ignored, so
    restarts never multiply the loops.
    """

    partition: int
    chain: int


class Renew(Message, frozen=True):
    """Worker -> itself: renew every lease it holds."""


class Delivered(Message, frozen=True):
    """Worker -> itself: the delivery task reported outcomes (``chain`` as for ``Work``).

    The outcomes wait, oldest first, in the partition's ``HeldPartition.outcomes``;
    this message names the first of them: ``batch_id``, and ``failure`` (empty when
    the destination took the batch, else why not).
    """

    partition: int
    chain: int
    batch_id: str
    failure: str = ""


WorkerMsg = Assign | Revoke | Work | Renew | Delivered


class Rebalance(Message, frozen=True):
    """Coordinator -> itself: grant free leases, even out the load."""


CoordinatorMsg = Rebalance | Terminated


class Produce(Message, frozen=True):
    """Producer -> itself: append the next chunk (``chain`` as for ``Work``)."""

    chain: int


ProducerMsg = Produce
