"""The queue server's journal: what it decided, in order, durably.

Each server appends one journal entry per request it handles (a batch of
events, one store write), so the cost of durability is paid per batch, not
per message. Replaying the journal rebuilds a server exactly: which
messages each key holds in which order, which one is out and on which
attempt, which ids were seen within the dedup window. The strict-order
check reads the same journal.

A ``ServerCheckpoint`` record bounds recovery: every entry before
``from_seq`` concerns only messages that are settled and ids that left the
dedup window. Offsets are per server and increase in enqueue order, so a
key's offsets increase in its enqueue order even across recovery.
"""

from __future__ import annotations

import msgspec

from actors.queue._messages import QueuedMessage


class MessageEnqueued(msgspec.Struct, frozen=True, array_like=True, tag=1):
    queue: str
    offset: int
    at: float
    message: QueuedMessage


class MessageReceived(msgspec.Struct, frozen=True, array_like=True, tag=2):
    queue: str
    key: str
    offset: int
    attempt: int
    at: float


class MessageAcked(msgspec.Struct, frozen=True, array_like=True, tag=3):
    queue: str
    key: str
    offset: int
    attempt: int
    at: float


class MessageReleased(msgspec.Struct, frozen=True, array_like=True, tag=4):
    queue: str
    key: str
    offset: int
    attempt: int
    at: float


class VisibilityExpired(msgspec.Struct, frozen=True, array_like=True, tag=5):
    queue: str
    key: str
    offset: int
    attempt: int
    at: float


class MessageDeadLettered(msgspec.Struct, frozen=True, array_like=True, tag=6):
    queue: str
    key: str
    offset: int
    at: float
    reason: str


JournalEvent = (MessageEnqueued | MessageReceived | MessageAcked | MessageReleased
                | VisibilityExpired | MessageDeadLettered)


class JournalEntry(msgspec.Struct, frozen=True, array_like=True):
    events: list[JournalEvent]


class ServerCheckpoint(msgspec.Struct, frozen=True):
    """Recovery reads the journal from ``from_seq``; offsets continue at ``next_offset``."""

    from_seq: int = 0
    next_offset: int = 0


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
