"""The session rules (``actors.logdelivery._state``) against a per-record model.

The server keeps compact ranges; the model keeps one entry per record. Any
sequence of reads, acks, appends and clock steps must give the same answers
and the same state either way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.logdelivery import NotDelivered
from actors.logdelivery._state import (
    InFlight,
    SessionState,
    ack_receipts,
    next_due,
    plan_read,
)

ACK_WAIT = 1.0


def new_state(start: int = 0, max_in_flight: int = 10, max_deliveries: int = 3) -> SessionState:
    return SessionState(session="s", log="l", start_seq=start, next_seq=start,
                        ack_wait=ACK_WAIT, max_in_flight=max_in_flight,
                        max_deliveries=max_deliveries, ttl=100.0, created_at=0.0,
                        last_active=0.0)


@dataclass
class Model:
    """One entry per record: in flight (deliveries, deadline), acked, or dead."""

    start: int
    max_in_flight: int
    max_deliveries: int
    next_seq: int = 0
    in_flight: dict[int, tuple[int, float]] = field(default_factory=dict)
    acked: set[int] = field(default_factory=set)
    dead: set[int] = field(default_factory=set)

    def read(self, high_water: int, max_records: int, now: float) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        budget = max_records
        for seq in sorted(self.in_flight):
            deliveries, deadline = self.in_flight[seq]
            if deadline > now:
                continue
            if self.max_deliveries and deliveries >= self.max_deliveries:
                del self.in_flight[seq]
                self.dead.add(seq)
            elif budget > 0:
                self.in_flight[seq] = (deliveries + 1, now + ACK_WAIT)
                out.append((seq, deliveries + 1))
                budget -= 1
        room = self.max_in_flight - len(self.in_flight)
        for seq in range(self.next_seq, self.next_seq + max(0, min(budget, room,
                                                                     high_water - self.next_seq))):
            self.in_flight[seq] = (1, now + ACK_WAIT)
            out.append((seq, 1))
            self.next_seq = seq + 1
        return out

    def ack(self, receipts: list[tuple[int, int]]) -> tuple[int, list[int]] | None:
        """(acked, superseded), or None when a receipt names a delivery never made."""
        named: dict[int, int] = {}
        for seq, delivery in receipts:
            named[seq] = max(delivery, named.get(seq, 0))
        if any(seq < self.start or seq >= self.next_seq for seq in named):
            return None
        current = {seq: self.in_flight[seq][0] for seq in named if seq in self.in_flight}
        if any(named[seq] > n for seq, n in current.items()):
            return None
        done = [seq for seq, n in current.items() if named[seq] == n]
        for seq in done:
            del self.in_flight[seq]
            self.acked.add(seq)
        return len(done), sorted(seq for seq, n in current.items() if named[seq] < n)


def expand(state: SessionState) -> dict[int, tuple[int, float]]:
    return {seq: (r.deliveries, r.deadline) for r in state.in_flight
            for seq in range(r.first, r.last + 1)}


def check_same(state: SessionState, model: Model) -> None:
    assert expand(state) == model.in_flight
    assert state.next_seq == model.next_seq
    assert state.dead_lettered == len(model.dead)
    assert state.acked == len(model.acked)
    assert state.in_flight_count <= state.max_in_flight
    assert all(a.last < b.first for a, b in zip(state.in_flight, state.in_flight[1:],
                                                 strict=False))


ops = st.lists(st.one_of(
    st.tuples(st.just("read"), st.integers(1, 12)),
    st.tuples(st.just("ack"), st.lists(st.tuples(st.integers(0, 60), st.integers(1, 4)),
                                       max_size=15)),
    st.tuples(st.just("append"), st.integers(1, 20)),
    st.tuples(st.just("tick"), st.sampled_from([0.5, 1.0, 1.5, 3.0])),
), max_size=60)


@settings(max_examples=300, deadline=None)
@given(ops=ops, max_in_flight=st.integers(1, 15), max_deliveries=st.integers(0, 3),
       start=st.integers(0, 5))
def test_ranges_behave_like_a_record_by_record_model(
        ops: list[tuple[str, object]], max_in_flight: int, max_deliveries: int,
        start: int) -> None:
    state = new_state(start, max_in_flight, max_deliveries)
    model = Model(start, max_in_flight, max_deliveries, next_seq=start)
    high_water = start + 5
    now = 0.0
    for op, arg in ops:
        if op == "read":
            assert isinstance(arg, int)
            plan = plan_read(state, high_water=high_water, max_records=arg, now=now)
            got = [(seq, r.deliveries) for r in [*plan.redelivered, *([plan.new] if plan.new
                                                                     else [])]
                   for seq in range(r.first, r.last + 1)]
            assert got == model.read(high_water, arg, now)
            state = plan.state
        elif op == "ack":
            assert isinstance(arg, list)
            expected = model.ack(arg)
            if expected is None:
                with pytest.raises(NotDelivered):
                    ack_receipts(state, arg, now)
                continue
            state, n, superseded = ack_receipts(state, arg, now)
            assert (n, superseded) == expected
        elif op == "append":
            high_water += int(arg)  # type: ignore[call-overload]
        else:
            now += float(arg)  # type: ignore[arg-type]
        check_same(state, model)


def test_a_read_of_many_records_is_one_range() -> None:
    plan = plan_read(new_state(max_in_flight=1000), high_water=10_000, max_records=500, now=5.0)
    assert plan.state.in_flight == [InFlight(0, 499, 1, 5.0 + ACK_WAIT)]
    small = plan_read(new_state(max_in_flight=1000), high_water=10_000, max_records=5, now=5.0)
    sizes = [len(msgspec.msgpack.encode(p.state)) for p in (plan, small)]
    assert sizes[0] - sizes[1] <= 12  # wider integers only: no per-record growth


def test_redeliveries_come_first_then_new_records() -> None:
    state = plan_read(new_state(), high_water=20, max_records=4, now=0.0).state
    state = ack_receipts(state, [(1, 1)], 0.5).state
    plan = plan_read(state, high_water=20, max_records=5, now=ACK_WAIT)
    assert [(r.first, r.last, r.deliveries) for r in plan.redelivered] == [(0, 0, 2), (2, 3, 2)]
    assert plan.new == InFlight(4, 5, 1, 2 * ACK_WAIT)


def test_nothing_is_redelivered_before_its_deadline() -> None:
    state = plan_read(new_state(max_in_flight=3), high_water=20, max_records=3, now=0.0).state
    plan = plan_read(state, high_water=20, max_records=3, now=ACK_WAIT - 0.001)
    assert not plan.changed
    assert next_due(state) == ACK_WAIT


def test_max_deliveries_dead_letters_and_moves_on() -> None:
    state = new_state(max_in_flight=2, max_deliveries=2)
    now = 0.0
    for _ in range(2):
        state = plan_read(state, high_water=5, max_records=2, now=now).state
        now += ACK_WAIT
    plan = plan_read(state, high_water=5, max_records=2, now=now)
    assert plan.dead == [InFlight(0, 1, 2, ACK_WAIT * 2)]
    assert plan.new == InFlight(2, 3, 1, now + ACK_WAIT)
    assert plan.state.dead_lettered == 2 and plan.state.floor == 2


def test_ack_of_a_record_never_delivered_changes_nothing() -> None:
    state = plan_read(new_state(start=10), high_water=20, max_records=3, now=0.0).state
    for bad in ([(13, 1)], [(9, 1)], [(10, 1), (15, 1)]):
        with pytest.raises(NotDelivered, match="never delivered"):
            ack_receipts(state, bad, 1.0)
    with pytest.raises(NotDelivered, match="delivered seq 11 1 time"):
        ack_receipts(state, [(10, 1), (11, 2)], 1.0)
    again, n, _ = ack_receipts(state, [(11, 1), (11, 1), (10, 1)], 1.0)
    assert n == 2 and again.floor == 12
    assert ack_receipts(again, [(10, 1)], 2.0).acked == 0  # a repeat ack is harmless


def test_an_ack_of_a_superseded_delivery_keeps_the_newer_copy_in_flight() -> None:
    state = plan_read(new_state(max_in_flight=3), high_water=20, max_records=3, now=0.0).state
    state = plan_read(state, high_water=20, max_records=2, now=ACK_WAIT).state  # 0, 1 again
    outcome = ack_receipts(state, [(0, 1), (1, 1), (2, 1)], ACK_WAIT + 0.5)
    assert (outcome.acked, outcome.superseded) == (1, [0, 1])
    assert outcome.state.in_flight_count == 2
    assert outcome.state.in_flight == [InFlight(0, 1, 2, 2 * ACK_WAIT)]


def test_expiry_is_judged_from_the_last_activity() -> None:
    state = new_state()
    assert not state.is_expired(100.0)
    assert state.is_expired(100.001)
    assert msgspec.structs.replace(state, expired=True).is_expired(0.0)
