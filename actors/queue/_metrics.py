"""Counters and latency samples a queue cluster keeps while it runs.

They live outside the actors (a restart does not reset them) and only
describe this run; the store holds the truth the invariants are checked on.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field

from runtime.scenario import Observation, percentile


class LatencySamples:
    """Parallel columns (key, seconds): no object per sample for the collector to walk
    (the seconds are a C array of doubles, which the collector does not even visit)."""

    __slots__ = ("keys", "seconds")

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.seconds: array[float] = array("d")


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
    latencies: dict[str, LatencySamples] = field(default_factory=dict)
    """Per queue: the key and the seconds from enqueue to ack of every acked message."""
    ack_latencies: array[float] = field(default_factory=lambda: array("d"))
    """Seconds from enqueue to ack of every acked message, all queues, in ack order."""

    def samples(self, queue: str) -> LatencySamples:
        """The samples of ``queue``, to add to."""
        found = self.latencies.get(queue)
        if found is None:
            found = self.latencies[queue] = LatencySamples()
        return found

    def on_returned(self, expired: bool) -> None:
        """A batch is visible again: its visibility timed out, or its client released it."""
        if expired:
            self.visibility_expired += 1
        else:
            self.released += 1

    def latency(self, queue: str, q: float, keys: set[str] | None = None,
                exclude: set[str] | None = None) -> float:
        """Percentile ``q`` of enqueue-to-ack seconds on ``queue``, optionally for some keys."""
        samples = self.latencies.get(queue, LatencySamples())
        values = [lat for key, lat in zip(samples.keys, samples.seconds, strict=True)
                  if (keys is None or key in keys) and (exclude is None or key not in exclude)]
        return percentile(values, q)

    def observation(self) -> Observation:
        """The probe a sampler reads: messages acked (every tier), enqueue-to-ack latency."""
        waiting = self.enqueued - self.duplicates_dropped - self.acked - self.dead_lettered
        return Observation(completed=self.acked, latencies=self.ack_latencies,
                           in_flight=max(0, waiting), unit="messages acked")
