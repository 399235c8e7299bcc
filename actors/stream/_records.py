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
    """What ``deliver(batch)`` receives: processed records, as columns.

    Record ``i`` is ``(seqs[i], keys[i], payloads[i])``; ``records`` builds
    them as ``Record`` objects (on every access: take it once). Columns are
    what is stored (a ``dir://`` file is this struct as JSON): a batch of
    records passed through unchanged costs no Python object per record.
    """

    batch_id: str
    partition: int
    first_seq: int
    last_seq: int
    seqs: list[int]
    keys: list[str]
    payloads: list[bytes]

    @property
    def records(self) -> list[Record]:
        return list(map(Record, self.seqs, self.keys, self.payloads))

    @classmethod
    def of_records(cls, batch_id: str, partition: int, first_seq: int, last_seq: int,
                   records: list[Record]) -> Batch:
        """The batch holding ``records`` (e.g. what a process function returned)."""
        return cls(batch_id, partition, first_seq, last_seq, [r.seq for r in records],
                   [r.key for r in records], [r.payload for r in records])


class Chunk(msgspec.Struct, frozen=True, array_like=True):
    """One log entry: the records one producer append brought to a partition.

    The log stores chunks, not single records (as Kafka stores record
    batches): one row per append instead of one per record is what lets a
    durable log keep up with the stream. Records keep consecutive sequence
    numbers: a chunk holds ``first_seq .. first_seq + len(keys) - 1``, and a
    chunk, once appended, never changes, so a range of chunks names an exact
    range of records.
    """

    first_seq: int
    keys: list[str]
    payloads: list[bytes]

    def records(self) -> list[Record]:
        first = self.first_seq
        return list(map(Record, range(first, first + len(self.keys)), self.keys, self.payloads))


class ProducerPosition(msgspec.Struct, frozen=True, array_like=True):
    """Stored with each append: source items below ``upto`` are in; next record seq."""

    upto: int
    next_seq: int


class PendingCheckpoint(msgspec.Struct, frozen=True):
    """A batch recorded *before* processing: exactly chunks ``first_chunk..last_chunk``,
    which hold records ``first_seq..last_seq``."""

    batch_id: str
    first_seq: int
    last_seq: int
    token: int
    first_chunk: int = 0
    last_chunk: int = 0


class Checkpoint(msgspec.Struct, frozen=True):
    """Per-partition progress: records below ``next_seq`` (chunks below ``next_chunk``)
    are delivered and committed.

    ``pending`` is the first batch recorded before processing and not yet
    committed; ``more_pending`` the batches recorded after it (several may be
    in flight at once). Together they name consecutive ranges from
    ``next_seq`` on, each under its deterministic batch id, so a replay
    delivers exactly those batches again, in order. ``more_pending`` is empty
    whenever ``pending`` is ``None``.
    """

    next_seq: int = 0
    pending: PendingCheckpoint | None = None
    next_chunk: int = 0
    more_pending: list[PendingCheckpoint] = []

    @property
    def pendings(self) -> list[PendingCheckpoint]:
        """Every pending batch, oldest first."""
        return [] if self.pending is None else [self.pending, *self.more_pending]


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
