"""The log delivery invariants, checked against the store and the journal.

- ``no_gaps``: every acknowledged append is in the log where the server
  said, and no record is in it twice (appends are retried under an
  idempotency key); every record of each session's range reached a reader of that
  session or is listed in its dead letters (and the count of dead letters
  matches the session's own); every session is settled through the high
  water (nothing left in flight); a record counted as settled was acked by
  a reader or dead-lettered.
- ``at_least_once_in_order``: the server sent each record for the first
  time exactly once, in sequence order (its first-delivery ranges are
  contiguous from the session start to the high water); readers saw each
  record's deliveries numbered 1, 2, ... in increasing order, and each
  reader saw first deliveries in increasing sequence order.
- ``no_client_offsets``: readers hold nothing but their session id (they
  are built from it alone) and restarts lose their batch; yet no record
  came back after its ack completed, and the sessions still settled.
- ``in_flight_bounded``: per session, the durable peak of unacknowledged
  records is at most ``max_in_flight``; the records readers held at once
  (from receipt to ack or deadline) never exceeded it; and a record was
  held by one reader at a time.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Mapping

import msgspec

from actors.logdelivery import _keys as keys
from actors.logdelivery._config import LogConfig
from actors.logdelivery._state import DeadLetter, SessionState
from actors.logdelivery._workload import Batch, Journal
from runtime.scenario import Audit, InvariantResult, read_whole_log
from runtime.store import LogEntry, Store

decode_state = msgspec.msgpack.Decoder(SessionState).decode
_decode_dead = msgspec.msgpack.Decoder(DeadLetter).decode


def show(items: Iterable[object], limit: int = 3) -> str:
    listed = list(items)
    more = f" (+{len(listed) - limit} more)" if len(listed) > limit else ""
    return ", ".join(str(i) for i in listed[:limit]) + more


async def read_log(store: Store, log: str, audit: Audit | None = None) -> list[LogEntry]:
    """Every entry of ``log`` from seq 0, what retention truncated from ``audit``."""
    return await read_whole_log(store, audit, log)


class Durable(msgspec.Struct):
    """What the store holds at the end of a run."""

    entries: list[LogEntry]
    states: dict[str, SessionState]
    dead: dict[str, list[DeadLetter]]

    @property
    def high_water(self) -> int:
        return len(self.entries)


async def load_durable(store: Store, log: str, sessions: list[str],
                       audit: Audit | None = None) -> Durable:
    """The log, the sessions' states and dead letters; what retention dropped (records,
    deleted sessions) from ``audit``."""
    states: dict[str, SessionState] = {}
    dead: dict[str, list[DeadLetter]] = {}
    for session in sessions:
        key = keys.session_key(log, session)
        found = await store.get(key)
        value = found.value if found is not None else audit.value(key) if audit else None
        if value is not None:
            states[session] = decode_state(value)
        dead[session] = [_decode_dead(e.payload) for e in
                         await read_log(store, keys.dead_letter_log(log, session), audit)]
    return Durable(await read_log(store, keys.records_log(log), audit), states, dead)


def dead_seqs(dead: list[DeadLetter]) -> set[int]:
    return {seq for d in dead for seq in range(d.first, d.last + 1)}


def settled_before(before: Mapping[str, SessionState], session: str) -> set[int]:
    """Records of ``session`` a run it resumes had settled (acked or dead-lettered):
    sent before it started and not in flight then."""
    state = before.get(session)
    if state is None:
        return set()
    out = set(range(state.start_seq, state.next_seq))
    for r in state.in_flight:
        out.difference_update(range(r.first, r.last + 1))
    return out


def check_no_gaps(config: LogConfig, journal: Journal, durable: Durable,
                  sessions: list[str],
                  before: Mapping[str, SessionState] | None = None) -> InvariantResult:
    problems: list[str] = []
    lost = []
    for first_seq, index, count, _ in journal.appended:
        for i in range(count):
            seq = first_seq + i
            got = durable.entries[seq] if seq < durable.high_water else None
            if got is None or int.from_bytes(got.payload[:8], "big") != index + i:
                lost.append(index + i)
    if lost:
        problems.append(f"{len(lost)} acknowledged appends not in the log where the server "
                        f"said: records {show(lost)}")
    copies = Counter(int.from_bytes(e.payload[:8], "big") for e in durable.entries)
    twice = sorted(index for index, n in copies.items() if n > 1)
    if twice:
        problems.append(f"{len(twice)} records appended more than once: {show(twice)}")
    hw = durable.high_water
    listed = 0
    for session in sessions:
        state = durable.states.get(session)
        if state is None:
            problems.append(f"session {session} has no durable state")
            continue
        dead = dead_seqs(durable.dead[session])
        listed += len(dead)
        if len(dead) != state.dead_lettered:
            problems.append(f"session {session}: {state.dead_lettered} dead-lettered but "
                            f"{len(dead)} listed")
        if state.next_seq != hw or state.in_flight:
            problems.append(f"session {session} not settled: sent up to {state.next_seq - 1}, "
                            f"{state.in_flight_count} in flight, high water {hw}")
        batches = journal.batches.get(session, [])
        earlier = settled_before(before or {}, session)
        received = {seq for b in batches for seq in b.seqs} | earlier
        acked = {seq for b in batches for seq in b.acked_seqs()} | earlier
        maybe = {seq for b in batches if b.ack_failed for seq in b.seqs}
        missing = [seq for seq in range(state.start_seq, hw)
                   if seq not in received and seq not in dead]
        if missing:
            problems.append(f"session {session}: {len(missing)} records neither delivered nor "
                            f"dead-lettered: {show(missing)}")
        unexplained = [seq for seq in range(state.start_seq, min(state.floor, hw))
                       if seq not in acked and seq not in dead and seq not in maybe]
        if unexplained:
            problems.append(f"session {session}: {len(unexplained)} records settled without an "
                            f"ack or a dead letter: {show(unexplained)}")
    problems.extend(journal.problems[:3])
    return InvariantResult(
        "no_gaps", not problems, "; ".join(problems) or
        f"{hw} records; each of {len(sessions)} sessions got every one "
        f"({listed} dead-lettered and listed); {len(journal.appended)} acknowledged appends "
        "all in the log")


def check_order(journal: Journal, durable: Durable, sessions: list[str],
                before: Mapping[str, SessionState] | None = None) -> InvariantResult:
    """In a resumed run, first deliveries continue where the earlier run's ended."""
    problems: list[str] = []
    hw = durable.high_water
    seen_redeliveries = 0
    for session in sessions:
        state = durable.states.get(session)
        if state is None:
            continue
        earlier = (before or {}).get(session)
        expect = state.start_seq if earlier is None else earlier.next_seq
        for first, last in journal.new_ranges.get(session, []):
            if first != expect:
                problems.append(f"session {session}: first delivery of {first}..{last} when "
                                f"{expect} was next")
            expect = last + 1
        if expect != hw:
            problems.append(f"session {session}: first deliveries end at {expect - 1}, "
                            f"log at {hw - 1}")
        last_delivery: dict[int, int] = {}
        last_first: dict[str, int] = {}
        for b in journal.batches.get(session, []):
            for seq, n in zip(b.seqs, b.deliveries, strict=True):
                if n <= last_delivery.get(seq, 0):
                    problems.append(f"session {session}: seq {seq} delivery {n} seen after "
                                    f"delivery {last_delivery[seq]}")
                last_delivery[seq] = n
                if n == 1:
                    if seq <= last_first.get(b.reader, -1):
                        problems.append(f"{b.reader}: first delivery of {seq} after "
                                        f"{last_first[b.reader]}")
                    last_first[b.reader] = seq
                else:
                    seen_redeliveries += 1
    server = sum(journal.server_redelivered.values())
    return InvariantResult(
        "at_least_once_in_order", not problems, "; ".join(problems[:3]) or
        f"first deliveries contiguous and in sequence order in every session; "
        f"{server} redeliveries counted by the server, {seen_redeliveries} seen by readers")


def check_no_client_offsets(journal: Journal, durable: Durable, sessions: list[str],
                            restarts: int, settled: bool) -> InvariantResult:
    problems: list[str] = []
    after_restart = 0
    for session in sessions:
        batches = journal.batches.get(session, [])
        acked_at: dict[int, float] = {}
        for b in batches:
            if b.ack_done is not None:
                for seq in b.acked_seqs():
                    acked_at.setdefault(seq, b.ack_done)
        for b in batches:
            back = [seq for seq in b.seqs if seq in acked_at and acked_at[seq] < b.at]
            if back:
                problems.append(f"session {session}: {b.reader} got {show(back)} back after "
                                "they were acknowledged")
        after_restart += sum(len(b.seqs) for b in batches if b.incarnation > 1)
    if not settled:
        problems.append("sessions did not settle")
    return InvariantResult(
        "no_client_offsets", not problems, "; ".join(problems[:3]) or
        f"readers are built from the session id alone; after {restarts} reader restarts "
        f"the restarted readers got {after_restart} records, none acknowledged before, "
        "and every session settled")


def check_in_flight(config: LogConfig, journal: Journal, durable: Durable,
                    sessions: list[str]) -> InvariantResult:
    problems: list[str] = []
    peak_held = 0
    for session in sessions:
        state = durable.states.get(session)
        if state is not None and state.in_flight_peak > config.max_in_flight:
            problems.append(f"session {session}: {state.in_flight_peak} in flight at once "
                            f"(max_in_flight {config.max_in_flight})")
        batches = journal.batches.get(session, [])
        peak = _peak_held(batches)
        peak_held = max(peak_held, peak)
        if peak > config.max_in_flight:
            problems.append(f"session {session}: readers held {peak} records at once")
        overlap = _shared(batches)
        if overlap:
            problems.append(f"session {session}: records held by two readers at once: "
                            f"{show(overlap)}")
    server_peak = max((s.in_flight_peak for s in durable.states.values()), default=0)
    return InvariantResult(
        "in_flight_bounded", not problems, "; ".join(problems[:3]) or
        f"at most {server_peak} unacknowledged per session (max_in_flight "
        f"{config.max_in_flight}); readers held at most {peak_held} at once, each record "
        "by one reader at a time")


def _held_until(b: Batch) -> float:
    return b.deadline if b.ack_sent is None else min(b.ack_sent, b.deadline)


def _peak_held(batches: list[Batch]) -> int:
    events: list[tuple[float, int, int]] = []
    for b in batches:
        events.append((b.at, 1, len(b.seqs)))
        events.append((_held_until(b), 0, -len(b.seqs)))
    held = peak = 0
    for _, _, delta in sorted(events):
        held += delta
        peak = max(peak, held)
    return peak


def _shared(batches: list[Batch]) -> list[int]:
    spans: dict[int, list[tuple[float, float]]] = {}
    for b in batches:
        until = _held_until(b)
        for seq in b.seqs:
            spans.setdefault(seq, []).append((b.at, until))
    found = []
    for seq, held in spans.items():
        held.sort()
        if any(later[0] < earlier[1] for earlier, later in itertools.pairwise(held)):
            found.append(seq)
    return sorted(found)
