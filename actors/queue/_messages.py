"""What queue servers hold and hand out, and the queue server protocol.

A ``QueuedMessage`` is immutable and identical wherever it travels: in an
``Enqueue``, in the server's journal, in a ``Delivery``, in the dead-letter
queue. Its ``id`` is also its dedup id. ``parents`` names the messages it
was made from (empty for an original), so the report can follow any
message back through the tiers and tell which dead letters still reached
the result.
"""

from __future__ import annotations

import msgspec

from actors.queue._ledger import Ledger
from runtime import Message


class QueuedMessage(msgspec.Struct, frozen=True, array_like=True):
    """One message of a queue; ``key`` is its strict-order key."""

    id: str
    key: str
    body: bytes
    ledger: Ledger
    parents: list[str] = msgspec.field(default_factory=list)


class Receipt(msgspec.Struct, frozen=True, array_like=True):
    """Proof of one delivery. Valid until the visibility timeout or the next delivery.

    ``offset`` is the message's position on its server (increasing per key in
    enqueue order); ``attempt`` counts its deliveries, so the receipt of an
    earlier delivery is stale once the message has been handed out again.
    """

    server: int
    queue: str
    key: str
    offset: int
    attempt: int


class Delivery(msgspec.Struct, frozen=True):
    """A received message and the receipt to ack or release it with."""

    receipt: Receipt
    message: QueuedMessage


class EnqueueResult(msgspec.Struct, frozen=True):
    """``accepted`` were stored; ``duplicates`` were dropped (their id was seen in the window)."""

    accepted: int
    duplicates: int


class AckResult(msgspec.Struct, frozen=True):
    """Acks that took effect, and those refused (stale or unknown receipts)."""

    acked: int
    refused: list[Receipt]


class QueueDepth(msgspec.Struct, frozen=True):
    """A queue's messages on one server (or summed over the cluster)."""

    pending: int
    in_flight: int
    dead: int

    @property
    def drained(self) -> bool:
        """Nothing waits and nothing is out: every message was acked or dead-lettered."""
        return self.pending == 0 and self.in_flight == 0


# -- the queue server protocol ----------------------------------------------


class Enqueue(Message, frozen=True):
    """Store ``messages`` at the end of their keys; ids seen within the dedup window drop."""

    queue: str
    messages: list[QueuedMessage]


class Receive(Message, frozen=True):
    """Hand out up to ``max_messages`` messages, at most one per key: each key's head."""

    queue: str
    max_messages: int


class Ack(Message, frozen=True):
    """The receipts' messages are done: remove them, and let their keys move on."""

    receipts: list[Receipt]


class Release(Message, frozen=True):
    """Processing failed: make the messages visible again now (or dead-letter them)."""

    receipts: list[Receipt]
    reason: str = ""


class Depth(Message, frozen=True):
    """How many messages of ``queue`` wait, are out, or are dead here."""

    queue: str


class ExpireVisibility(Message, frozen=True):
    """Timer: hand out again the messages whose visibility timeout has passed."""


QueueServerMsg = Enqueue | Receive | Ack | Release | Depth | ExpireVisibility
