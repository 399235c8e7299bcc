"""Counters a stream job keeps while it runs (in memory; the store holds the truth)."""

from __future__ import annotations

from dataclasses import dataclass, field

from actors.stream._records import Batch
from runtime.scenario import Observation


@dataclass
class StreamMetrics:
    produced: int = 0
    source_position: int = 0
    producer_done: bool = False
    delivered_records: int = 0
    delivered_batches: int = 0
    committed_records: int = 0
    committed_batches: int = 0
    redelivered_batches: int = 0
    destination_failures: int = 0
    stale_refused: int = 0
    late_commits_refused: int = 0
    leases_lost: int = 0
    lease_moves: int = 0
    last_owner: dict[int, str] = field(default_factory=dict)
    lost_at: dict[int, float] = field(default_factory=dict)
    recovery_times: list[float] = field(default_factory=list)
    first_commit_at: float | None = None
    last_commit_at: float = 0.0
    deliveries: list[tuple[int, int, int]] = field(default_factory=list)
    batch_latencies: list[float] = field(default_factory=list)
    """Per commit, seconds since the partition's previous commit: a backlogged
    partition's batch turnaround (read, pending, deliver, commit, and any
    recovery in between)."""
    committed_at: dict[int, float] = field(default_factory=dict)

    def on_delivery(self, batch: Batch) -> None:
        self.delivered_batches += 1
        self.delivered_records += len(batch.seqs)
        self.deliveries.append((batch.partition, batch.first_seq, batch.last_seq))

    def on_commit(self, partition: int, records: int, now: float) -> None:
        self.committed_batches += 1
        self.committed_records += records
        if self.first_commit_at is None:
            self.first_commit_at = now
        self.last_commit_at = now
        previous = self.committed_at.get(partition)
        if previous is not None:
            self.batch_latencies.append(now - previous)
        self.committed_at[partition] = now
        lost = self.lost_at.pop(partition, None)
        if lost is not None:
            self.recovery_times.append(now - lost)

    def partition_lost(self, partition: int, now: float) -> None:
        """A worker holding ``partition`` stopped; recovery ends at the next commit."""
        self.lost_at.setdefault(partition, now)

    def observation(self) -> Observation:
        """The probe a sampler reads: records committed, batch turnaround, backlog."""
        return Observation(completed=self.committed_records, latencies=self.batch_latencies,
                           in_flight=self.produced - self.committed_records,
                           unit="records committed")
