"""The queue server's journal: what it decided, in order, durably.

Each server appends one journal entry per request it handles (a batch of
events; the entries staged while a write is out go out in the next store
write), and an event covers a whole request's messages
(an enqueue's messages in one list; a receive's or an ack's batches as
columns of keys, offsets, counts and attempts), so the cost of durability
is paid per request, not per message. Replaying the journal rebuilds a server exactly: which
messages each key holds in which order, which one is out and on which
attempt, which ids were seen within the dedup window. The strict-order
check reads the same journal.

A ``ServerCheckpoint`` record bounds recovery: every entry before
``from_seq`` concerns only messages that are settled and ids that left the
dedup window, and the journal is truncated below it. A batch whose head was
enqueued before ``from_seq`` may hold messages enqueued after it: receives
and acks name each batch's last member (``lasts``), so a replay from the
checkpoint settles those too instead of handing them out again. Offsets are
per server and increase in enqueue order, so a key's offsets increase in its
enqueue order even across recovery.
"""

from __future__ import annotations

import msgspec

from actors.queue._messages import QueuedMessage


class MessagesEnqueued(msgspec.Struct, frozen=True, array_like=True, tag=1, gc=False):
    """One request's new messages, at offsets ``first_offset``, ``first_offset + 1``, ..."""

    queue: str
    first_offset: int
    at: float
    messages: list[QueuedMessage]


class BatchesReceived(msgspec.Struct, frozen=True, array_like=True, tag=2, gc=False):
    """One receive, in columns: key ``keys[i]`` handed out its first ``counts[i]``
    messages, starting at its head ``offsets[i]`` and ending at ``lasts[i]``, as
    delivery ``attempts[i]``, to the client named ``holder`` (empty: anonymous)."""

    queue: str
    at: float
    keys: list[str]
    offsets: list[int]
    counts: list[int]
    attempts: list[int]
    holder: str = ""
    lasts: list[int] = msgspec.field(default_factory=list)
    """The last member's offset per batch: a replay that starts after the head was
    enqueued (a checkpoint) still knows which of its messages the batch held."""


class BatchesAcked(msgspec.Struct, frozen=True, array_like=True, tag=3, gc=False):
    """The first ``counts[i]`` messages of the batch out on ``keys[i]`` (delivered from
    ``offsets[i]`` as attempt ``attempts[i]``), through offset ``lasts[i]``, are done;
    the key's batch is no longer out."""

    queue: str
    at: float
    keys: list[str]
    offsets: list[int]
    counts: list[int]
    attempts: list[int]
    lasts: list[int] = msgspec.field(default_factory=list)
    """As in ``BatchesReceived``: the last acked member's offset per batch."""


class BatchReturned(msgspec.Struct, frozen=True, array_like=True, tag=4, gc=False):
    """The batch out on ``key`` (from ``offset``, attempt ``attempt``) is visible again:
    released by its client (``expired`` false) or past its visibility timeout. The
    members at ``untried`` offsets were not the failure: their receive counts go back."""

    queue: str
    key: str
    offset: int
    attempt: int
    at: float
    expired: bool
    untried: list[int] = msgspec.field(default_factory=list)


class MessageDeadLettered(msgspec.Struct, frozen=True, array_like=True, tag=6, gc=False):
    """The message at ``offset`` of ``key`` (not out) leaves for the dead-letter queue."""

    queue: str
    key: str
    offset: int
    at: float
    reason: str


class QueueSealed(msgspec.Struct, frozen=True, array_like=True, tag=7, gc=False):
    """No more input is coming to ``queue``: its partial windows may go out."""

    queue: str
    at: float


JournalEvent = (MessagesEnqueued | BatchesReceived | BatchesAcked | BatchReturned
                | MessageDeadLettered | QueueSealed)


class JournalEntry(msgspec.Struct, frozen=True, array_like=True):
    events: list[JournalEvent]


class ServerCheckpoint(msgspec.Struct, frozen=True):
    """Recovery reads the journal from ``from_seq``; offsets continue at ``next_offset``;
    ``sealed`` queues were sealed before it (their events may lie before ``from_seq``)."""

    from_seq: int = 0
    next_offset: int = 0
    sealed: list[str] = msgspec.field(default_factory=list)


class DeadLetter(msgspec.Struct, frozen=True):
    """A message that was received ``receives`` times and never acked."""

    server: int
    queue: str
    offset: int
    receives: int
    at: float
    reason: str
    message: QueuedMessage


encode = msgspec.msgpack.Encoder().encode
decode_entry = msgspec.msgpack.Decoder(JournalEntry).decode
decode_checkpoint = msgspec.msgpack.Decoder(ServerCheckpoint).decode
decode_dead_letter = msgspec.msgpack.Decoder(DeadLetter).decode


def journal_log(cluster: str, server: int) -> str:
    return f"q/{cluster}/journal/{server}"


def checkpoint_key(cluster: str, server: int) -> str:
    return f"q/{cluster}/checkpoint/{server}"


def dead_letter_log(cluster: str, server: int) -> str:
    return f"q/{cluster}/dlq/{server}"
