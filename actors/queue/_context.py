"""``PipelineContext``: what the actors of one queue pipeline share on a node.

The actors (tier clients, the final step's client, the conductor, the
producer) are built from a tier index (a serializable spec) plus this small
node-local context, never from the ``QueuePipeline`` front object. It holds
nothing that must survive a crash (that is in the store): the validated
configuration, this node's client of the queue servers, the resolved
functions, the source, and the run's counters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from actors.queue._cluster import QueueCluster
from actors.queue._config import FINAL_QUEUE, QueueConfig
from actors.queue._functions import TierStep
from actors.queue._messages import Receipt
from actors.queue._metrics import QueueMetrics

FinalFn = Callable[[list[bytes]], object]
SourceFn = Callable[[int], Iterator[tuple[str, bytes]]]


@dataclass
class PipelineContext:
    config: QueueConfig
    cluster: QueueCluster
    metrics: QueueMetrics
    steps: list[TierStep]
    """One per tier, in order: its function (user's or built-in) and poison."""
    final_fn: FinalFn
    source_items: SourceFn
    seed: int
    produced: int = 0
    """Originals durably enqueued so far (the producer's cursor)."""
    late_acks: list[tuple[str, Receipt]] = field(default_factory=list)
    """(client, receipt) of every settlement refused as late or stale."""
    node: str = ""
    """The cluster node these actors run on (across nodes every node runs the same
    clients, so a client's holder name carries it); "" in one process."""

    @property
    def full(self) -> bool:
        return self.config.lineage == "full"

    def holder(self, client: str) -> str:
        """The name client ``client`` receives under (unique across nodes)."""
        return f"{self.node}/{client}" if self.node else client

    def input_queue(self, tier: int) -> str:
        return self.config.tiers[tier].name

    def output_queue(self, tier: int) -> str:
        tiers = self.config.tiers
        return tiers[tier + 1].name if tier + 1 < len(tiers) else FINAL_QUEUE
