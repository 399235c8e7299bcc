"""What a destination sees, and the durable checkpoint a partition keeps.

A ``Batch`` is the unit of delivery: its id is derived from the exact range
of sequence numbers it holds, so a replay after a crash delivers the same id
with the same records, and a destination that writes by batch id makes the
repeat a no-op. Two different batch ids never share a sequence number.
"""

from __future__ import annotations

import msgspec


class Record(msgspec.Struct, frozen=True):
    """One record of a partition's log: consecutive ``seq`` per partition."""

    seq: int
    key: str
    payload: bytes


class Batch(msgspec.Struct, frozen=True):
    """What ``deliver(batch)`` receives: ``records`` are already processed."""

    batch_id: str
    partition: int
    first_seq: int
    last_seq: int
    records: list[Record]


class PendingCheckpoint(msgspec.Struct, frozen=True):
    """A batch recorded *before* processing: exactly the range ``first..last``."""

    batch_id: str
    first_seq: int
    last_seq: int
    token: int


class Checkpoint(msgspec.Struct, frozen=True):
    """Per-partition progress: everything below ``next_seq`` is delivered and committed."""

    next_seq: int = 0
    pending: PendingCheckpoint | None = None


class CommitRecord(msgspec.Struct, frozen=True):
    """Appended to the partition's commit log in the same transaction as the commit."""

    batch_id: str
    first_seq: int
    last_seq: int
    token: int
    owner: str


def batch_id(stream: str, partition: int, first_seq: int, last_seq: int) -> str:
    """Deterministic id of the batch holding ``first_seq..last_seq`` of a partition."""
    return f"{stream}-p{partition:03d}-{first_seq:012d}-{last_seq:012d}"
