"""Bounds and defaults shared by the embedding API, the server and the HTTP layer.

Every bound is checked at the edge that receives the value, with a message
naming the value and the bound, so a bad request is refused before it can
touch any session.
"""

from __future__ import annotations

import math
from typing import Annotated

import msgspec

from actors.logdelivery._errors import BadRequest, TooLarge

MAX_READ_RECORDS = 10_000
"""Most records one read may ask for."""
MAX_WAIT = 60.0
"""Longest long-poll, in seconds."""
MAX_APPEND_RECORDS = 10_000
"""Most records one append may carry."""
MAX_ACK_RECEIPTS = 10_000
"""Most receipts one ack may list."""
MAX_BODY_BYTES = 16 << 20
"""Default bound of an HTTP request body."""
MAX_KEY_BYTES = 1024
MAX_PAYLOAD_BYTES = 1 << 20
MAX_IN_FLIGHT_LIMIT = 1_000_000
MAX_DELIVERIES_LIMIT = 1_000_000
MAX_TTL = 30 * 24 * 3600.0


class SessionSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Defaults for new sessions; each may be overridden per session.

    ``ack_wait``: seconds a delivered record waits for its ack before it is
    redelivered (JetStream's AckWait, default 30 s). ``max_in_flight``: most
    unacknowledged records per session (JetStream's MaxAckPending, default
    1,000). ``max_deliveries``: deliveries before a record is dead-lettered
    (0: no limit). ``ttl``: seconds a session may stay idle before it expires.
    """

    ack_wait: float = 30.0
    max_in_flight: int = 1000
    max_deliveries: int = 10
    ttl: float = 3600.0

    def __post_init__(self) -> None:
        check_session_settings(self.ack_wait, self.max_in_flight, self.max_deliveries, self.ttl)


def _within(value: object, low: float, high: float, *, integer: bool = False,
            open_low: bool = False) -> bool:
    """Whether ``value`` is a real int (or finite number) in ``low..high``."""
    if isinstance(value, bool) or not isinstance(value, int if integer else int | float):
        return False
    number = float(value)
    if not math.isfinite(number) or number > high:
        return False
    return number > low if open_low else number >= low


def check_session_settings(ack_wait: object, max_in_flight: object, max_deliveries: object,
                           ttl: object) -> None:
    """``BadRequest`` naming the first setting out of range."""
    if not _within(ack_wait, 0, MAX_TTL, open_low=True):
        raise BadRequest(f"ack_wait must be seconds in (0, {MAX_TTL:g}], got {ack_wait!r}")
    if not _within(max_in_flight, 1, MAX_IN_FLIGHT_LIMIT, integer=True):
        raise BadRequest(f"max_in_flight must be an integer in 1..{MAX_IN_FLIGHT_LIMIT}, "
                         f"got {max_in_flight!r}")
    if not _within(max_deliveries, 0, MAX_DELIVERIES_LIMIT, integer=True):
        raise BadRequest(f"max_deliveries must be an integer in 0..{MAX_DELIVERIES_LIMIT} "
                         f"(0: no limit), got {max_deliveries!r}")
    if not _within(ttl, 0, MAX_TTL, open_low=True):
        raise BadRequest(f"ttl must be seconds in (0, {MAX_TTL:g}], got {ttl!r}")


def check_read(max_records: object, wait: object) -> None:
    if not _within(max_records, 1, MAX_READ_RECORDS, integer=True):
        raise BadRequest(f"max must be an integer in 1..{MAX_READ_RECORDS}, got {max_records!r}")
    if not _within(wait, 0, MAX_WAIT):
        raise BadRequest(f"wait must be seconds in 0..{MAX_WAIT:g}, got {wait!r}")


Receipt = tuple[Annotated[int, msgspec.Meta(ge=0)], Annotated[int, msgspec.Meta(ge=1)]]
"""``(seq, delivery)``: which delivery of which record an ack acknowledges."""
_RECEIPTS = list[Receipt]


def check_receipts(receipts: object) -> list[tuple[int, int]]:
    """``receipts`` as a list of ``(seq, delivery)`` tuples; ``BadRequest`` unless they are
    integer pairs with ``seq >= 0`` and ``delivery >= 1``, ``TooLarge`` past
    ``MAX_ACK_RECEIPTS``. (msgspec checks them: an ack of 500 costs ~0.1 ms.)"""
    if isinstance(receipts, list) and len(receipts) > MAX_ACK_RECEIPTS:
        raise TooLarge(f"an ack lists at most {MAX_ACK_RECEIPTS} receipts, got {len(receipts)}")
    try:
        return msgspec.convert(receipts, _RECEIPTS)
    except msgspec.ValidationError as exc:
        raise BadRequest("receipts must be [seq, delivery] pairs of integers with "
                         f"seq >= 0 and delivery >= 1: {exc}") from None
