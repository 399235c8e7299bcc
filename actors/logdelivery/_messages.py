"""The LogServer protocol and the values it answers with.

A request names the session by id only: there is no offset field anywhere
in the protocol, so a client cannot keep one even if it wanted to.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import msgspec

from runtime import Message


class AppendRecords(Message, frozen=True):
    """Append ``(key, payload)`` entries durably, in order; answered with ``Appended``.

    ``idempotency_key``: an append naming a key another append took (inside
    the key's window) appends nothing and is answered with what that one did
    (``_appends``)."""

    entries: list[tuple[str, bytes]]
    idempotency_key: str | None = None


class CreateSession(Message, frozen=True):
    """Open a session at ``start`` (``"earliest"``, ``"latest"`` or a sequence number)."""

    start: str | int
    ack_wait: float
    max_in_flight: int
    max_deliveries: int
    ttl: float


class ReadRecords(Message, frozen=True):
    """Hand out up to ``max_records``; with ``park`` and nothing to hand out, answer
    ``Parked``. With ``hold`` > 0 (a reader on another node, which a ``Parked`` future
    cannot reach) and nothing to hand out, answer ``None`` once that may have changed,
    or after ``hold`` seconds at the latest: then read again."""

    session: str
    max_records: int
    park: bool = False
    hold: float = 0.0


class AckRecords(Message, frozen=True):
    """Acknowledge records by receipt: ``(seq, delivery)`` as a read handed them out.

    Naming the delivery is what makes a late ack safe: an ack of a delivery
    that was superseded (the record was handed out again since) changes
    nothing; see ``_state.ack_receipts``.
    """

    session: str
    receipts: list[tuple[int, int]]


class DescribeSession(Message, frozen=True):
    session: str


class ReadDeadLetters(Message, frozen=True):
    """The session's dead-letter ranges from index ``offset`` on, at most ``limit``."""

    session: str
    offset: int = 0
    limit: int = 1000


LogServerMsg = (AppendRecords | CreateSession | ReadRecords | AckRecords | DescribeSession
                | ReadDeadLetters)


class Delivery(msgspec.Struct, frozen=True):
    """One record handed to a reader; ``delivery`` is 1 the first time, 2 the next ...

    ``(seq, delivery)`` is the record's receipt: what an ack names.
    """

    seq: int
    key: str
    payload: bytes = msgspec.field(name="payload_b64")
    delivery: int

    @property
    def receipt(self) -> tuple[int, int]:
        return (self.seq, self.delivery)


class ReadResult(msgspec.Struct, frozen=True):
    """What a read returns: redeliveries first, then new records; both in sequence order.

    ``ack_deadline`` (wall-clock seconds) is when these records become due
    for redelivery unless acknowledged; ``None`` when nothing was returned.
    """

    records: list[Delivery]
    ack_deadline: float | None = None


class Appended(msgspec.Struct, frozen=True):
    """``count`` records were stored durably at ``first_seq`` onward."""

    first_seq: int
    count: int


class SessionCreated(msgspec.Struct, frozen=True):
    session: str
    start_seq: int


class Acked(msgspec.Struct, frozen=True):
    """``acked`` records were newly acknowledged; ``floor``: all below it are settled.

    ``superseded``: the seqs whose receipt named an earlier delivery than the
    current one; they were not acknowledged (their newer copy is out to a
    reader, which settles them, or they come back after its deadline).
    """

    acked: int
    floor: int
    in_flight: int
    superseded: list[int] = []


class SessionInfo(msgspec.Struct, frozen=True):
    """A snapshot of a session, for operators and checks (times are wall-clock seconds)."""

    session: str
    log: str
    start_seq: int
    next_seq: int
    floor: int
    in_flight: int
    in_flight_peak: int
    delivered: int
    redelivered: int
    acked: int
    dead_lettered: int
    ack_wait: float
    max_in_flight: int
    max_deliveries: int
    ttl: float
    created_at: float
    last_active: float
    expires_at: float
    expired: bool
    high_water: int
    """The log's high water when the snapshot was taken (``floor == high_water``: all settled)."""


class Refusal(Message, frozen=True):
    """The server refused a request; ``code`` names the error class (see ``_errors``).

    A tagged message, so a refusal that crossed the cluster's wire comes back as a
    ``Refusal`` (the other replies come back as plain data; ``LogClient`` converts).
    """

    code: str
    detail: str
    fields: dict[str, int] = {}


@dataclass(slots=True)
class Parked:
    """Nothing to hand out yet: ``wake`` resolves when that may have changed.

    One future per waiting reader, resolved by the server when records are
    appended or acknowledged; ``retry_after`` (seconds) is when the earliest
    in-flight deadline passes, after which a redelivery may be due.
    """

    wake: asyncio.Future[None]
    retry_after: float | None
