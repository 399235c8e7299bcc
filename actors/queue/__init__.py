"""Distributed strict queue with multi-tier processing and a contribution ledger.

Public API for embedding: :class:`QueueCluster` (N queue servers with
strict per-key order, visibility timeouts, dead letters and dedup) and
:class:`QueuePipeline` (tiers of map/reduce clients over a cluster, with
:class:`QueueConfig`). ``SYSTEM`` is the ``[queue]`` scenario system
registered under the ``shardline.systems`` entry point.
"""

from actors.queue._builtins import final_sums, make_map, make_reduce
from actors.queue._cluster import QueueCluster, Retry
from actors.queue._config import (
    FINAL_QUEUE,
    GeneratedSource,
    PoisonSpec,
    QueueConfig,
    QueueExpect,
    TierConfig,
)
from actors.queue._functions import PoisonMessage
from actors.queue._journal import DeadLetter
from actors.queue._ledger import Ledger, merge_ledgers, original_id, output_id
from actors.queue._messages import (
    AckResult,
    Batch,
    Delivery,
    EnqueueResult,
    QueueDepth,
    QueuedMessage,
    Receipt,
    Settlement,
    Taken,
    WindowPolicy,
)
from actors.queue._metrics import QueueMetrics
from actors.queue._pipeline import QueuePipeline
from actors.queue._placement import Placement, owner
from actors.queue._system import SYSTEM, QueueSystem

__all__ = [
    "FINAL_QUEUE",
    "SYSTEM",
    "AckResult",
    "Batch",
    "DeadLetter",
    "Delivery",
    "EnqueueResult",
    "GeneratedSource",
    "Ledger",
    "Placement",
    "PoisonMessage",
    "PoisonSpec",
    "QueueCluster",
    "QueueConfig",
    "QueueDepth",
    "QueueExpect",
    "QueueMetrics",
    "QueuePipeline",
    "QueueSystem",
    "QueuedMessage",
    "Receipt",
    "Retry",
    "Settlement",
    "Taken",
    "TierConfig",
    "WindowPolicy",
    "final_sums",
    "make_map",
    "make_reduce",
    "merge_ledgers",
    "original_id",
    "output_id",
    "owner",
]
