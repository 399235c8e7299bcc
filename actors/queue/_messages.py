"""What queue servers hold and hand out, and the queue server protocol.

A ``QueuedMessage`` is immutable and identical wherever it travels: in an
``Enqueue``, in the server's journal, in a ``Delivery``, in the dead-letter
queue. Its ``id`` is also its dedup id. ``parents`` names the messages it
was made from (empty for an original), so the report can follow any
message back through the tiers and tell which dead letters still reached
the result.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from actors.queue._ledger import Ledger, original_digests
from runtime import Message


class QueuedMessage(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One message of a queue; ``key`` is its strict-order key.

    Untracked by the garbage collector (``gc=False``; it holds no cycles): a
    server holds hundreds of thousands, and a tracked object each would make
    every full collection walk them all.
    """

    id: str
    key: str
    body: bytes
    ledger: Ledger
    parents: tuple[str, ...] = ()


def original_messages(queue: str, first: int, keys: list[str], bodies: list[bytes],
                      full: bool) -> list[QueuedMessage]:
    """The originals ``first``, ``first + 1``, ... of pipeline ``queue`` with these keys
    and bodies, each under its ``original_id`` with its own ledger."""
    digests = original_digests(queue, first, len(keys))
    if full:
        return [QueuedMessage(d.hex(), key, body, Ledger(1, d, [d.hex()]))
                for d, key, body in zip(digests, keys, bodies, strict=True)]
    return [QueuedMessage(d.hex(), key, body, Ledger(1, d))
            for d, key, body in zip(digests, keys, bodies, strict=True)]


class Receipt(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """Proof of one delivery of ``count`` consecutive messages of ``key`` (a batch).
    Valid until the visibility timeout or the next delivery of the key.

    ``offset`` is the first message's position on its server (increasing per
    key in enqueue order); ``attempt`` counts the deliveries of that first
    message, so the receipt of an earlier delivery is stale once the batch
    has been handed out again. The batch is settled as a unit.
    """

    server: int
    queue: str
    key: str
    offset: int
    attempt: int
    count: int = 1


class Batch(msgspec.Struct, frozen=True, gc=False):
    """Consecutive messages of one key handed out together, and their one receipt."""

    receipt: Receipt
    messages: list[QueuedMessage]
    offsets: list[int]
    """Each message's offset on its server (increasing, not necessarily consecutive)."""


class Taken(msgspec.Struct, frozen=True, gc=False):
    """One receive's batches from one server, in columns: no object per batch.

    Batch ``i`` is the first ``counts[i]`` messages of key ``keys[i]``, starting
    at offset ``offsets[i]``, handed out as delivery ``attempts[i]``; its
    messages are ``messages[starts[i]:starts[i] + counts[i]]`` (and their
    offsets the same slice of ``message_offsets``). Each batch is still settled
    on its own (``receipt(i)`` is its ``Receipt``); ``SettleTaken`` settles the
    batches done whole in columns too.
    """

    server: int
    queue: str
    keys: list[str]
    offsets: list[int]
    attempts: list[int]
    counts: list[int]
    messages: list[QueuedMessage]
    message_offsets: list[int]

    def starts(self) -> list[int]:
        """Where each batch's messages begin in ``messages``."""
        found: list[int] = []
        at = 0
        for count in self.counts:
            found.append(at)
            at += count
        return found

    def receipt(self, i: int) -> Receipt:
        return Receipt(self.server, self.queue, self.keys[i], self.offsets[i],
                       self.attempts[i], self.counts[i])

    def batches(self) -> list[Batch]:
        """The same batches as objects (what ``Receive`` answers)."""
        found: list[Batch] = []
        at = 0
        for i, count in enumerate(self.counts):
            found.append(Batch(self.receipt(i), self.messages[at:at + count],
                               self.message_offsets[at:at + count]))
            at += count
        return found


class Settlement(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """How a client settles one batch.

    The first ``acked`` messages are done. With ``failed`` >= ``acked``, the
    message at that index is the one that failed (``reason``): it is
    dead-lettered once it has been received ``max_receives`` times, and the
    others not acked are handed out again without that attempt counting
    against them. With ``failed`` = -1 the rest is handed out again as is.
    """

    receipt: Receipt
    acked: int
    failed: int = -1
    reason: str = ""


class WindowPolicy(msgspec.Struct, frozen=True):
    """A reduce tier's input queue: its keys go out in windows of ``size`` messages.

    A key is handed out only once it holds ``size`` messages, or its oldest
    has waited ``max_age`` seconds, or the queue is sealed (its input ended);
    a window handed out again is the same messages (its output id depends on them).
    """

    size: int
    max_age: float | None = None


class Delivery(msgspec.Struct, frozen=True):
    """A received message and the receipt to ack or release it with (a batch of one)."""

    receipt: Receipt
    message: QueuedMessage


class EnqueueResult(msgspec.Struct, frozen=True):
    """``accepted`` were stored; ``duplicates`` were dropped (their id was seen in the window)."""

    accepted: int
    duplicates: int


class AckResult(msgspec.Struct, frozen=True):
    """Messages whose settlement took effect, and the receipts refused (stale or unknown)."""

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
    """Hand out batches of up to ``per_key`` messages of a key (a whole window on a
    windowed queue), from distinct keys, up to about ``max_messages`` in all."""

    queue: str
    max_messages: int
    per_key: int = 1
    holder: str = ""
    """The receiving client's name, so its batches can come back when it restarts."""


class Take(Message, frozen=True):
    """As ``Receive``, answered with one ``Taken`` (columns) instead of a ``Batch`` each."""

    queue: str
    max_messages: int
    per_key: int = 1
    holder: str = ""


class SettleTaken(Message, frozen=True):
    """Ack whole the batches named in columns (as a ``Taken`` names them: key, head
    offset, attempt and size each), and settle ``others`` as ``Settle`` does.
    Each batch is checked on its own: a stale or late one is refused alone."""

    queue: str
    keys: list[str]
    offsets: list[int]
    attempts: list[int]
    counts: list[int]
    others: list[Settlement] = msgspec.field(default_factory=list)


def settle_taken(taken: Taken, others: Sequence[Settlement] = ()) -> SettleTaken:
    """The request acking ``taken``'s batches whole, except those ``others`` settle."""
    if not others:
        return SettleTaken(taken.queue, taken.keys, taken.offsets, taken.attempts, taken.counts)
    named = {(s.receipt.key, s.receipt.offset) for s in others}
    keep = [i for i, key in enumerate(taken.keys) if (key, taken.offsets[i]) not in named]
    return SettleTaken(taken.queue, [taken.keys[i] for i in keep],
                       [taken.offsets[i] for i in keep], [taken.attempts[i] for i in keep],
                       [taken.counts[i] for i in keep], list(others))


class HolderRestarted(Message, frozen=True):
    """The client ``holder`` (re)started: batches an earlier run of it holds come back."""

    holder: str


class Settle(Message, frozen=True):
    """Settle batches (see ``Settlement``); stale or late receipts are refused."""

    settlements: list[Settlement]


class Seal(Message, frozen=True):
    """The input of ``queue`` has ended: partial windows may go out (idempotent)."""

    queue: str


class Depth(Message, frozen=True):
    """How many messages of ``queue`` wait, are out, or are dead here."""

    queue: str


class ExpireVisibility(Message, frozen=True):
    """Timer: hand out again the messages whose visibility timeout has passed."""


class JournalFailed(Message, frozen=True):
    """To itself: a journal write failed, so the server crashes and recovers."""


QueueServerMsg = (Enqueue | Receive | Take | Settle | SettleTaken | Seal | HolderRestarted
                  | Depth | ExpireVisibility | JournalFailed)
