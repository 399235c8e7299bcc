"""Counters and latency samples a queue cluster keeps while it runs.

They live outside the actors (a restart does not reset them) and only
describe this run; the store holds the truth the invariants are checked on.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field, fields

from runtime.scenario import Observation, percentile


class AckLatencies:
    """Enqueue-to-ack seconds of every acked message, all queues, in ack order.

    Parallel columns (queue, key, seconds), one copy of each sample: no object
    per sample for the collector to walk (queue and seconds are C arrays, which
    it does not even visit). ``seconds`` only grows, so it is the sampler's
    latency column as it stands; a queue's samples are read by filtering.
    """

    __slots__ = ("keys", "queue_names", "queues", "seconds")

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.seconds: array[float] = array("d")
        self.queues: array[int] = array("H")
        """Per sample: the index of its queue in ``queue_names``."""
        self.queue_names: list[str] = []

    def queue_index(self, queue: str) -> int:
        """The index samples of ``queue`` are tagged with (assigned on first use)."""
        try:
            return self.queue_names.index(queue)
        except ValueError:
            self.queue_names.append(queue)
            return len(self.queue_names) - 1

    def tag(self, queue: int, since: int) -> None:
        """Tag every sample added since length ``since`` with ``queue``."""
        self.queues.extend(array("H", [queue]) * (len(self.seconds) - since))

    def add(self, other: AckLatencies) -> None:
        """Append ``other``'s samples (its queues mapped to this column's indexes)."""
        if not other.seconds:
            return
        mine = [self.queue_index(name) for name in other.queue_names]
        if mine == list(range(len(mine))):  # the same indexes: the usual case
            self.queues.extend(other.queues)
        else:
            self.queues.extend(array("H", [mine[q] for q in other.queues]))
        self.keys.extend(other.keys)
        self.seconds.extend(other.seconds)

    def of(self, queue: str, keys: set[str] | None = None,
           exclude: set[str] | None = None) -> list[float]:
        """The seconds of ``queue``'s samples, optionally only some keys or all but some."""
        if queue not in self.queue_names:
            return []
        wanted = self.queue_names.index(queue)
        return [lat for q, key, lat in zip(self.queues, self.keys, self.seconds, strict=True)
                if q == wanted and (keys is None or key in keys)
                and (exclude is None or key not in exclude)]


@dataclass
class QueueMetrics:
    enqueued: int = 0
    duplicates_dropped: int = 0
    deliveries: int = 0
    redeliveries: int = 0
    acked: int = 0
    acks_refused: int = 0
    released: int = 0
    visibility_expired: int = 0
    dead_lettered: int = 0
    server_recoveries: int = 0
    recovered_messages: int = 0
    processing_errors: int = 0
    outputs_enqueued: int = 0
    windows_closed: int = 0
    request_retries: int = 0
    acks: AckLatencies = field(default_factory=AckLatencies)

    def add(self, other: QueueMetrics) -> None:
        """Add ``other``'s counts and samples to these."""
        for name in _COUNTERS:
            value = getattr(other, name)
            if value:
                setattr(self, name, getattr(self, name) + value)
        self.acks.add(other.acks)

    def on_returned(self, expired: bool) -> None:
        """A batch is visible again: its visibility timed out, or its client released it."""
        if expired:
            self.visibility_expired += 1
        else:
            self.released += 1

    def latency(self, queue: str, q: float, keys: set[str] | None = None,
                exclude: set[str] | None = None) -> float:
        """Percentile ``q`` of enqueue-to-ack seconds on ``queue``, optionally for some keys."""
        return percentile(self.acks.of(queue, keys, exclude), q)

    def observation(self) -> Observation:
        """The probe a sampler reads: messages acked (every tier), enqueue-to-ack latency."""
        waiting = self.enqueued - self.duplicates_dropped - self.acked - self.dead_lettered
        return Observation(completed=self.acked, latencies=self.acks.seconds,
                           in_flight=max(0, waiting), unit="messages acked")


_COUNTERS = tuple(f.name for f in fields(QueueMetrics) if f.name != "acks")
