"""Values that cross the store boundary: frozen, tagged msgspec structs.

They are plain data so any of them can be encoded to MessagePack (for a log
line, a trace or the wire) and decoded back to the same type.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

Clock = Callable[[], float]
"""The runtime's clock in seconds; may be virtual. Lease expiry is judged by it alone."""


class LogEntry(msgspec.Struct, frozen=True, tag=True):
    """One entry of a log; ``seq`` is its position, counted from 0 per log."""

    seq: int
    key: str
    payload: bytes


class Versioned(msgspec.Struct, frozen=True, tag=True):
    """A record's value and the version a compare-and-set must name to replace it."""

    value: bytes
    version: int


class Lease(msgspec.Struct, frozen=True, tag=True):
    """A grant of ``key`` to ``owner`` until ``expires_at`` (store clock).

    ``token`` is the fencing token: larger than every token granted for this
    key before, so a write carrying an older one can be refused.
    """

    key: str
    owner: str
    token: int
    expires_at: float


class Append(msgspec.Struct, frozen=True, tag=True):
    """Append ``entries`` (``(key, payload)`` pairs) to ``log``, in order."""

    log: str
    entries: list[tuple[str, bytes]]


class Put(msgspec.Struct, frozen=True, tag=True):
    """Set ``key`` to ``value``.

    ``expect_version``: ``None`` writes unconditionally, ``0`` requires that
    the key does not exist, ``n`` requires that its current version is ``n``.
    """

    key: str
    value: bytes
    expect_version: int | None = None


class Delete(msgspec.Struct, frozen=True, tag=True):
    """Remove ``key``; ``expect_version`` as for :class:`Put`."""

    key: str
    expect_version: int | None = None


class Fence(msgspec.Struct, frozen=True, tag=True):
    """Make a write conditional on ``token`` being the newest grant of ``lease_key``."""

    lease_key: str
    token: int


class Truncate(msgspec.Struct, frozen=True, tag=True):
    """Drop the entries of ``log`` below ``before_seq``: the log's floor rises to
    ``min(before_seq, high water)`` and never falls (a lower ``before_seq`` is a no-op)."""

    log: str
    before_seq: int


WriteOp = Append | Put | Delete | Truncate


class WriteResult(msgspec.Struct, frozen=True, tag=True):
    """What one atomic write did.

    ``first_seqs[log]``: the seq of the first entry this write appended to
    ``log`` (its entries hold ``first_seqs[log]`` onward, consecutively; for
    an empty append it is the log's high water). ``versions[key]``: the new
    version of each key the write touched, ``0`` for a deleted key.
    ``floors[log]``: the floor of each log the write truncated, after it.
    """

    first_seqs: dict[str, int]
    versions: dict[str, int]
    floors: dict[str, int] = {}


class StoreStatistics(msgspec.Struct, frozen=True, tag=True):
    """Counters since the store was opened.

    ``writes`` counts ``write`` calls that reached the backend (refused ones
    included); ``transactions`` counts commits, so with group commit it can
    be far below ``writes``; ``reads`` counts read-only calls;
    ``leases_granted`` counts successful ``acquire`` calls, renewals included.
    """

    writes: int
    transactions: int
    reads: int
    conflicts: int
    stale_fences: int
    entries_appended: int
    leases_granted: int


class StoreSize(msgspec.Struct, frozen=True, tag=True):
    """The bytes a store occupies, and what was counted (``Store.size``)."""

    bytes: int
    basis: str
