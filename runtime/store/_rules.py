"""The semantics every backend shares, as pure functions.

A backend supplies lookups into its committed (or in-transaction) state and
applies what these functions decide; it never re-implements the rules. That
is how ``memory://``, ``sqlite://`` and ``postgresql://`` stay indistinguishable
to a caller.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from runtime._errors import ConflictError, ShardlineError, StaleFencingToken
from runtime.store._types import (
    Append,
    Delete,
    Fence,
    Lease,
    Put,
    Truncate,
    WriteOp,
    WriteResult,
)


class RecordState(NamedTuple):
    """A stored record. ``value is None`` is a tombstone: the key was deleted,
    but its last version is kept so a later put continues from it and a
    version number is never handed out twice for one key (no ABA)."""

    value: bytes | None
    version: int


@dataclass(slots=True)
class WritePlan:
    """The effects of one write, decided but not yet applied."""

    rows: list[tuple[str, int, str, bytes]] = field(default_factory=list)
    """New log entries as ``(log, seq, key, payload)``, in seq order per log."""
    records: dict[str, RecordState] = field(default_factory=dict)
    """Final state of every record the write changes."""
    next_seqs: dict[str, int] = field(default_factory=dict)
    """High water of every log the write appended to, after the write."""
    floors: dict[str, int] = field(default_factory=dict)
    """Floor of every log the write truncated, after the write: apply by deleting the
    entries below it and storing it (it may equal the stored one: nothing to do)."""
    first_seqs: dict[str, int] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)

    def result(self) -> WriteResult:
        return WriteResult(first_seqs=self.first_seqs, versions=self.versions,
                           floors=self.floors)


def check_fence(fence: Fence, newest_token: int) -> None:
    """Refuse a write whose token is not the newest grant of its lease key.

    Pure fencing: expiry does not matter, only whether a newer token exists.
    A key that was never granted (``newest_token == 0``) fences every write.
    """
    if newest_token == 0:
        raise StaleFencingToken(
            f"write fenced by lease {fence.lease_key!r} with token {fence.token} refused: "
            f"no token was ever granted for that lease (newest token 0)"
        )
    if fence.token != newest_token:
        raise StaleFencingToken(
            f"write fenced by lease {fence.lease_key!r} with token {fence.token} refused: "
            f"the newest token granted for that lease is {newest_token}"
        )


def _check_version(kind: str, key: str, expected: int | None, actual: int) -> None:
    if expected is not None and expected != actual:
        absent = " (0 = absent)" if 0 in (expected, actual) else ""
        raise ConflictError(
            f"{kind} of key {key!r} expected version {expected} "
            f"but the current version is {actual}{absent}"
        )


def plan_write(
    ops: Sequence[WriteOp],
    fence: Fence | None,
    *,
    next_seq: Callable[[str], int],
    record_state: Callable[[str], RecordState | None],
    newest_token: Callable[[str], int],
    floor: Callable[[str], int],
) -> WritePlan:
    """Decide what ``ops`` do, raising before anything is applied.

    Ops apply in order, each seeing the effect of the ones before it (two
    appends to one log are consecutive; a put then a delete of one key ends
    deleted). Raises ``StaleFencingToken`` or ``ConflictError``; the plan is
    all-or-nothing because nothing is applied until it is complete.
    """
    if fence is not None:
        check_fence(fence, newest_token(fence.lease_key))
    plan = WritePlan()
    for op in ops:
        if isinstance(op, Append):
            seq = plan.next_seqs[op.log] if op.log in plan.next_seqs else next_seq(op.log)
            plan.first_seqs.setdefault(op.log, seq)
            for key, payload in op.entries:
                plan.rows.append((op.log, seq, key, payload))
                seq += 1
            plan.next_seqs[op.log] = seq
            continue
        if isinstance(op, Truncate):
            high = plan.next_seqs[op.log] if op.log in plan.next_seqs else next_seq(op.log)
            low = plan.floors[op.log] if op.log in plan.floors else floor(op.log)
            plan.floors[op.log] = max(low, min(op.before_seq, high))
            continue
        current = plan.records[op.key] if op.key in plan.records else record_state(op.key)
        last_version = current.version if current is not None else 0
        live_version = last_version if current is not None and current.value is not None else 0
        if isinstance(op, Put):
            _check_version("put", op.key, op.expect_version, live_version)
            plan.records[op.key] = RecordState(op.value, last_version + 1)
            plan.versions[op.key] = last_version + 1
        elif isinstance(op, Delete):
            _check_version("delete", op.key, op.expect_version, live_version)
            if live_version:
                plan.records[op.key] = RecordState(None, last_version)
            plan.versions[op.key] = 0
    return plan


@dataclass(slots=True)
class BatchPlan:
    """The effects of a group commit's writes together, decided but not yet applied."""

    outcomes: list[WriteResult | Exception] = field(default_factory=list)
    """Per write, in order: its result, or why it was refused (it contributes nothing)."""
    rows: list[tuple[str, int, str, bytes]] = field(default_factory=list)
    """Every new log entry of the writes applied, as ``(log, seq, key, payload)``."""
    records: dict[str, RecordState] = field(default_factory=dict)
    """Final state of every record the batch changes."""
    next_seqs: dict[str, int] = field(default_factory=dict)
    """High water after the batch of every log it appended to."""
    floors: dict[str, int] = field(default_factory=dict)
    """Floor after the batch of every log it truncated: apply by deleting the entries
    below it (the rows appended in the batch lie above it) and storing it."""


def plan_batch(
    writes: Sequence[tuple[Sequence[WriteOp], Fence | None]],
    *,
    next_seq: Callable[[str], int],
    record_state: Callable[[str], RecordState | None],
    newest_token: Callable[[str], int],
    floor: Callable[[str], int],
) -> BatchPlan:
    """Decide the writes of one batch in order, each against the committed state (the
    lookups) plus the writes before it that were not refused; a refused write
    contributes nothing, as if it had been rolled back to a savepoint of its own.
    Applying the plan in one go leaves what applying each write in order would."""
    batch = BatchPlan()
    seqs, records, floors = batch.next_seqs, batch.records, batch.floors

    def seq_now(log: str) -> int:
        return seqs[log] if log in seqs else next_seq(log)

    def state_now(key: str) -> RecordState | None:
        return records[key] if key in records else record_state(key)

    def floor_now(log: str) -> int:
        return floors[log] if log in floors else floor(log)

    for ops, fence in writes:
        try:
            plan = plan_write(ops, fence, next_seq=seq_now, record_state=state_now,
                              newest_token=newest_token, floor=floor_now)
        except ShardlineError as refused:
            batch.outcomes.append(refused)
            continue
        batch.rows += plan.rows
        seqs.update(plan.next_seqs)
        records.update(plan.records)
        floors.update(plan.floors)
        batch.outcomes.append(plan.result())
    return batch


def grant_lease(
    current: Lease | None, newest_token: int, key: str, owner: str, ttl: float, now: float
) -> Lease | None:
    """Decide an ``acquire``: renew, grant with a fresh token, or refuse.

    ``current`` is the last lease granted and neither released nor replaced
    (possibly expired). Invariant kept here: a grant to anyone but the
    current unexpired owner gets ``newest_token + 1``, so tokens for a key
    strictly increase and are never reused.
    """
    if current is not None and now < current.expires_at:
        if current.owner != owner:
            return None
        return Lease(key=key, owner=owner, token=current.token, expires_at=now + ttl)
    return Lease(key=key, owner=owner, token=newest_token + 1, expires_at=now + ttl)


def is_held(lease: Lease | None, now: float) -> bool:
    """A lease is held until its ``expires_at``, exclusive."""
    return lease is not None and now < lease.expires_at


def may_release(current: Lease | None, owner: str, token: int, now: float) -> bool:
    """Whether ``release(key, owner, token)`` frees ``current``: only the unexpired
    grant itself (that owner under that token) may, so a holder whose lease expired
    and was granted again cannot free its successor's."""
    return current is not None and is_held(current, now) and \
        (current.owner, current.token) == (owner, token)


def prefix_end(prefix: str) -> str:
    """The least string above every string starting with ``prefix`` ("" = none).

    SQLite's BINARY collation and PostgreSQL's ``"C"`` collation compare UTF-8
    bytes, which orders like code points (as Python's ``str``), so
    ``prefix <= key < prefix_end(prefix)`` is an index range on either.
    """
    chars = list(prefix)
    while chars:
        code = ord(chars.pop()) + 1
        if code <= 0x10FFFF:
            if 0xD800 <= code <= 0xDFFF:  # surrogates cannot be stored; skip them
                code = 0xE000
            return "".join(chars) + chr(code)
    return ""
