"""What a worker keeps about one partition it leases (lost with the lease or a crash).

The batches in flight form a window: ``window`` holds the batches recorded as
pending and not yet committed, oldest first; the first ``delivered`` of them
reached the destination. At most one delivery runs at a time (a partition's
batches reach the destination in sequence order, which ``append://`` relies
on) and commits are made by the worker's handler, in order; the two overlap:
batch *k + 1* is delivered while batch *k* is committed, and a commit takes
every batch delivered by then.
"""

from __future__ import annotations

from collections import deque

from actors.stream._buffer import ChunkBuffer, Slice


class HeldPartition:
    """One leased partition's pipeline; see the module docstring.

    ``buffer`` is ``None`` until the checkpoint was read. The partition is let
    go only when no delivery runs.
    """

    __slots__ = ("buffer", "chain", "crash", "delivered", "delivering", "expires_at", "lost",
                 "notified", "outcomes", "retries", "revoked", "token", "waiting", "window")

    def __init__(self, token: int, chain: int, expires_at: float) -> None:
        self.token = token
        self.chain = chain
        self.expires_at = expires_at
        self.buffer: ChunkBuffer | None = None
        self.window: deque[Slice] = deque()
        self.delivered = 0
        self.delivering = False
        """A delivery task runs (it may go on from batch to batch: ``_worker._delivery``)."""
        self.outcomes: deque[tuple[str, str, bool]] = deque()
        """What the delivery task reported and the handler has not yet taken:
        ``(batch_id, failure, last)``, oldest first; ``last`` when the task ended."""
        self.notified = False
        """A ``Delivered`` is on its way to the handler for ``outcomes``."""
        self.waiting = False
        """A failed delivery waits for its retry (a ``Work`` after a backoff)."""
        self.retries = 0
        self.crash: BaseException | None = None
        self.lost = ""
        """Why the lease was found lost while a delivery ran: its commit is refused."""
        self.revoked = False
        """Asked to hand the partition back: once what was delivered is committed."""
