"""A receiver session's durable state and the pure rules that change it.

The server, not the client, remembers where a session is. The state is
compact whatever the batch size: the records sent and not yet acknowledged
are a sorted list of disjoint *ranges*, each with the number of times it
was delivered and the wall-clock deadline of its acknowledgement; everything
below the first range (or below ``next_seq`` when none is in flight) is
settled, acknowledged or dead-lettered. So a read of 500 records adds one
range and costs one store write, not 500 rows.

Rules kept here (and property-tested against a per-record model):

- a read returns first the records whose deadline passed, in sequence
  order, then new records from ``next_seq`` on, in sequence order;
- a record is in flight to one reader at a time: it is handed out again
  only once its deadline has passed;
- at most ``max_in_flight`` records are unacknowledged (new records wait);
- a record whose deadline passes after its ``max_deliveries``-th delivery
  is dead-lettered instead of redelivered, and the session moves on
  (``max_deliveries = 0``: no limit);
- an ack names each record with the delivery it acknowledges (a receipt
  ``(seq, delivery)``); only records the session delivered, that many
  times (else ``NotDelivered`` and nothing changes); a receipt of a
  superseded delivery, or of a settled record, changes nothing.

Times are wall-clock seconds (the runtime clock's ``wall()``), so deadlines
and TTLs survive a process restart.
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec

from actors.logdelivery._errors import NotDelivered


class InFlight(msgspec.Struct, frozen=True, array_like=True):
    """Records ``first..last`` (inclusive), sent ``deliveries`` times, due by ``deadline``."""

    first: int
    last: int
    deliveries: int
    deadline: float

    @property
    def size(self) -> int:
        return self.last - self.first + 1


class DeadLetter(msgspec.Struct, frozen=True):
    """Records ``first..last`` given up on after ``deliveries`` deliveries, at ``at`` (wall)."""

    first: int
    last: int
    deliveries: int
    at: float


class SessionState(msgspec.Struct, frozen=True):
    """Everything the server knows about one session; stored as one versioned record."""

    session: str
    log: str
    start_seq: int
    next_seq: int
    """One above the highest sequence ever sent in this session."""
    ack_wait: float
    max_in_flight: int
    max_deliveries: int
    ttl: float
    created_at: float
    last_active: float
    in_flight: list[InFlight] = []
    expired: bool = False
    delivered: int = 0
    redelivered: int = 0
    acked: int = 0
    dead_lettered: int = 0
    in_flight_peak: int = 0

    @property
    def floor(self) -> int:
        """Every record below this is settled (acknowledged or dead-lettered)."""
        return self.in_flight[0].first if self.in_flight else self.next_seq

    @property
    def in_flight_count(self) -> int:
        return sum(r.size for r in self.in_flight)

    def expires_at(self) -> float:
        return self.last_active + self.ttl

    def is_expired(self, now: float) -> bool:
        return self.expired or now > self.expires_at()


class ReadPlan(NamedTuple):
    """What one read does: the new state, what to send, what to give up on."""

    state: SessionState
    redelivered: list[InFlight]
    """Ranges sent again, with their new delivery count (deadline passed before)."""
    new: InFlight | None
    """Records sent for the first time, if any."""
    dead: list[InFlight]
    """Ranges dead-lettered by this read (their last delivery's deadline passed)."""

    @property
    def changed(self) -> bool:
        return bool(self.redelivered or self.new or self.dead)


def _merge(ranges: list[InFlight]) -> list[InFlight]:
    """Join neighbours with the same delivery count and deadline, so state stays small."""
    out: list[InFlight] = []
    for r in ranges:
        if out:
            prev = out[-1]
            if (prev.last + 1 == r.first and prev.deliveries == r.deliveries
                    and prev.deadline == r.deadline):
                out[-1] = InFlight(prev.first, r.last, r.deliveries, r.deadline)
                continue
        out.append(r)
    return out


def plan_read(state: SessionState, *, high_water: int, max_records: int,
              now: float) -> ReadPlan:
    """Decide a read of up to ``max_records`` at wall time ``now`` (the rules above)."""
    deadline = now + state.ack_wait
    budget = max_records
    kept: list[InFlight] = []
    redelivered: list[InFlight] = []
    dead: list[InFlight] = []
    limit = state.max_deliveries
    for r in state.in_flight:
        if r.deadline > now:
            kept.append(r)
        elif limit and r.deliveries >= limit:
            dead.append(r)
        elif budget <= 0:
            kept.append(r)
        else:
            take = min(budget, r.size)
            sent = InFlight(r.first, r.first + take - 1, r.deliveries + 1, deadline)
            redelivered.append(sent)
            kept.append(sent)
            if take < r.size:
                kept.append(InFlight(r.first + take, r.last, r.deliveries, r.deadline))
            budget -= take
    in_flight = sum(r.size for r in kept)
    count = max(0, min(budget, state.max_in_flight - in_flight, high_water - state.next_seq))
    new = InFlight(state.next_seq, state.next_seq + count - 1, 1, deadline) if count else None
    if new is not None:
        kept.append(new)
        in_flight += count
    resent = sum(r.size for r in redelivered)
    updated = msgspec.structs.replace(
        state,
        next_seq=state.next_seq + count,
        in_flight=_merge(kept),
        delivered=state.delivered + resent + count,
        redelivered=state.redelivered + resent,
        dead_lettered=state.dead_lettered + sum(r.size for r in dead),
        in_flight_peak=max(state.in_flight_peak, in_flight),
        last_active=max(state.last_active, now),
    )
    return ReadPlan(updated, redelivered, new, dead)


def next_due(state: SessionState) -> float | None:
    """The earliest deadline in flight (when a waiting reader may get a redelivery)."""
    return min((r.deadline for r in state.in_flight), default=None)


def _check_delivered(state: SessionState, low: int, high: int) -> None:
    if low < state.start_seq or high >= state.next_seq:
        bad = low if low < state.start_seq else high
        sent = (f"{state.start_seq}..{state.next_seq - 1}" if state.next_seq > state.start_seq
                else "none yet")
        raise NotDelivered(
            f"session {state.session} never delivered seq {bad} (records delivered so far: "
            f"{sent}); nothing was acknowledged")


class AckOutcome(NamedTuple):
    """What one ack did: the new state, how many records it settled, which it did not."""

    state: SessionState
    acked: int
    superseded: list[int]
    """Seqs named with a delivery that was superseded: they were handed out again after
    the delivery the ack names, so the reader holding the newer copy settles them."""


def ack_receipts(state: SessionState, receipts: list[tuple[int, int]],
                 now: float) -> AckOutcome:
    """Acknowledge records by receipt ``(seq, delivery)`` (any order, repeats allowed).

    An ack names the delivery it acknowledges, as an SQS receipt handle does:
    a receipt of the record's current delivery settles it; a receipt of an
    earlier delivery (the record was redelivered since, perhaps to another
    reader) is *superseded*: it changes nothing, so the in-flight count of
    the current delivery stays until its holder acks it or its deadline
    passes. A receipt of a settled record changes nothing either.
    ``NotDelivered`` (nothing changes) if a seq was never delivered in this
    session, or not that many times.
    """
    if not receipts:
        touched = msgspec.structs.replace(state, last_active=max(state.last_active, now))
        return AckOutcome(touched, 0, [])
    ordered = sorted(receipts)  # by seq, then delivery: a repeated seq's last is its highest
    _check_delivered(state, ordered[0][0], ordered[-1][0])
    out: list[InFlight] = []
    superseded: list[int] = []
    removed = 0
    i = 0
    n = len(ordered)
    for r in state.in_flight:
        while i < n and ordered[i][0] < r.first:
            i += 1
        cur = r.first
        while i < n and ordered[i][0] <= r.last:
            s, delivery = ordered[i]
            i += 1
            if i < n and ordered[i][0] == s:
                continue  # the same record named again with a higher delivery: judge that
            if delivery < r.deliveries:
                superseded.append(s)
                continue
            if delivery > r.deliveries:
                raise NotDelivered(
                    f"session {state.session} delivered seq {s} {r.deliveries} time(s), "
                    f"not {delivery}; nothing was acknowledged")
            if s > cur:
                out.append(InFlight(cur, s - 1, r.deliveries, r.deadline))
            cur = s + 1
            removed += 1
        if cur == r.first:
            out.append(r)
        elif cur <= r.last:
            out.append(InFlight(cur, r.last, r.deliveries, r.deadline))
    return AckOutcome(_acked(state, out, removed, now), removed, superseded)


def _acked(state: SessionState, ranges: list[InFlight], removed: int,
           now: float) -> SessionState:
    return msgspec.structs.replace(
        state, in_flight=ranges, acked=state.acked + removed,
        last_active=max(state.last_active, now))
