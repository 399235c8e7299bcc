"""The durable state contract every backend keeps.

All methods are ``async``. A store is used from one event loop.

Logs
    Append-only sequences named by a string (``"stream/orders/3"``). Seqs
    start at 0 per log and are consecutive: a log never has a gap, and an
    entry, once acknowledged, never changes. ``high_water(log)`` is the next
    seq to be assigned, i.e. the number of entries ever appended (0 for an
    unknown log).

Truncation (retention)
    ``truncate(log, before_seq)`` drops the entries below ``before_seq``.
    Afterwards ``floor(log)``, the first live seq, is ``min(before_seq,
    high_water)``; a floor never falls (truncating below it is a no-op) and
    ``high_water`` is unchanged, so a seq is never assigned twice, even when
    every entry of a log is dropped and the store is reopened: the floor is
    durable. ``read(log, from_seq, ...)`` with ``from_seq`` below the floor
    raises ``LogTruncated`` naming the log and the floor, never a silent
    skip; a read from the floor or above is as before. ``Truncate(log,
    before_seq)`` is also a write op: inside a fenced ``write`` it truncates
    in the same transaction as the other ops (a consumer's checkpoint and
    the truncation behind it commit together, or neither does), seeing the
    appends before it in that write. Space: the dropped entries are deleted;
    ``sqlite://`` reuses their pages (``runtime.store._sqlite``).

Records
    Versioned values with compare-and-set. A key's first put gives version
    1 and every put adds 1. ``expect_version`` ``None`` writes
    unconditionally, ``0`` requires the key to be absent, ``n`` requires the
    current version to be ``n``; otherwise ``ConflictError`` names the key
    and both versions. A deleted key reads as absent (version 0), but a
    later put continues from its last version, so a version number is never
    reused for a key and a stale compare-and-set cannot succeed by accident.
    ``get_many(keys)`` reads several records in one call; a missing or
    deleted key is left out of its result.

Writes
    ``write(ops, fence=...)`` is atomic: every op applies or none does. Ops
    apply in order, each seeing the ones before it. A write that raised was
    not applied. A write whose caller was cancelled may or may not have been
    applied (as with any remote call); re-reading tells. Likewise a write to a
    remote database whose connection broke during COMMIT: its ``StoreError``
    says the outcome is unknown.

Leases and fencing
    ``acquire`` grants a free, expired or own lease; a holder renewing keeps
    its token, and any other grant gets a token one above the highest ever
    granted for the key. Tokens are durable and never reused, even after
    release or revoke. A write carrying ``Fence(key, token)`` is refused with
    ``StaleFencingToken`` unless ``token`` is the newest grant for ``key``;
    expiry alone does not fence (a newer grant does), and the check is made
    in the same transaction as the write. Expiry is judged only by the
    ``clock`` the store was opened with, never by wall time, so simulated
    time drives leases like everything else. One exception keeps several
    machines agreeing: a store shared by processes (``postgresql://``) opened
    with a clock that reads real time judges by its server's clock instead
    (``runtime.store._postgres``), and ``Lease.expires_at`` is then in that
    clock's seconds.

Size
    ``size()`` is the bytes the store occupies now, as ``StoreSize(bytes,
    basis)``: ``sqlite://`` the database file plus its WAL, ``postgresql://``
    ``pg_total_relation_size`` of the schema's tables (indexes and TOAST
    included), ``memory://`` an estimate (the keys, payloads and values held,
    not Python's overhead). It is what retention keeps bounded.

Errors
    Bad arguments raise ``TypeError``/``ValueError`` at the call, before
    anything is queued. Store failures raise ``StoreError`` (subclasses as
    above); a closed store raises ``StoreError`` on every call but ``close``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from runtime._errors import ConflictError, LogTruncated, StaleFencingToken, StoreError
from runtime.store._types import (
    Append,
    Clock,
    Delete,
    Fence,
    Lease,
    LogEntry,
    Put,
    StoreSize,
    StoreStatistics,
    Truncate,
    Versioned,
    WriteOp,
    WriteResult,
)


@dataclass(slots=True)
class _Counters:
    writes: int = 0
    transactions: int = 0
    reads: int = 0
    conflicts: int = 0
    stale_fences: int = 0
    entries_appended: int = 0
    leases_granted: int = 0


def _require_name(what: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise TypeError(f"{what} must be a non-empty str, got {value!r}")


def _require_count(what: str, value: object, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{what} must be an int >= {minimum}, got {value!r}")


def _require_expect(op: Put | Delete) -> None:
    if op.expect_version is not None:
        _require_count(f"expect_version of {op!r}", op.expect_version, 0)


def _validate_op(op: object) -> None:
    if isinstance(op, Append):
        _require_name("Append.log", op.log)
        for entry in op.entries:
            if not (
                isinstance(entry, tuple)
                and len(entry) == 2
                and isinstance(entry[0], str)
                and isinstance(entry[1], bytes)
            ):
                raise TypeError(
                    f"entries of Append to {op.log!r} must be (key: str, payload: bytes) "
                    f"tuples, got {entry!r}"
                )
    elif isinstance(op, Put):
        _require_name("Put.key", op.key)
        if not isinstance(op.value, bytes):
            raise TypeError(f"Put to {op.key!r} needs a bytes value, got {type(op.value)!r}")
        _require_expect(op)
    elif isinstance(op, Delete):
        _require_name("Delete.key", op.key)
        _require_expect(op)
    elif isinstance(op, Truncate):
        _require_name("Truncate.log", op.log)
        _require_count(f"before_seq of {op!r}", op.before_seq, 0)
    else:
        raise TypeError(f"a write takes Append, Put, Delete or Truncate ops, got {op!r}")


class Store(ABC):
    """Logs, versioned records and fenced leases behind one atomic ``write``.

    The contract (numbering, versions, atomicity, fencing, time) is the
    docstring of this module; every backend keeps all of it.
    Subclasses implement the ``_``-prefixed hooks; the public methods here
    validate arguments, read the clock once per call and keep statistics,
    so every backend rejects the same inputs the same way.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._closed = False
        self._counters = _Counters()

    # -- logs ------------------------------------------------------------

    async def read(self, log: str, from_seq: int, limit: int) -> list[LogEntry]:
        """Entries of ``log`` with ``seq >= from_seq``, ascending, at most ``limit``.

        Raises ``LogTruncated`` if ``from_seq`` is below the log's floor.
        """
        self._check_open()
        _require_name("log", log)
        _require_count("from_seq", from_seq, 0)
        _require_count("limit", limit, 0)
        self._counters.reads += 1
        entries = await self._read(log, from_seq, limit)
        if not entries or entries[0].seq != from_seq:
            # Seqs have no gaps, so a result starting at from_seq skipped nothing. Else
            # the floor, read after the entries, tells: floors only rise, so a floor at or
            # below from_seq now was so during the read too, and the result is whole.
            floor = await self._floor(log)
            if from_seq < floor:
                raise LogTruncated(log, from_seq, floor)
        return entries

    async def floor(self, log: str) -> int:
        """The first live seq of ``log``: entries below it were truncated (0 if never)."""
        self._check_open()
        _require_name("log", log)
        self._counters.reads += 1
        return await self._floor(log)

    async def truncate(self, log: str, before_seq: int, *, fence: Fence | None = None) -> int:
        """Drop the entries of ``log`` below ``before_seq``; returns the floor after.

        The floor becomes ``min(before_seq, high_water)`` unless it is already
        higher. See the module docstring and ``write`` (fencing).
        """
        result = await self.write([Truncate(log, before_seq)], fence=fence)
        return result.floors[log]

    async def high_water(self, log: str) -> int:
        """The next seq ``log`` will assign; entries ``0 .. high_water - 1`` exist."""
        self._check_open()
        _require_name("log", log)
        self._counters.reads += 1
        return await self._high_water(log)

    async def append(
        self, log: str, entries: list[tuple[str, bytes]], *, fence: Fence | None = None
    ) -> int:
        """Append to one log; returns the seq of the first entry. See ``write``."""
        result = await self.write([Append(log, entries)], fence=fence)
        return result.first_seqs[log]

    # -- records ---------------------------------------------------------

    async def get(self, key: str) -> Versioned | None:
        self._check_open()
        _require_name("key", key)
        self._counters.reads += 1
        return await self._get(key)

    async def get_many(self, keys: Sequence[str]) -> dict[str, Versioned]:
        """The live records among ``keys``, by key, read at one point in time.

        A missing or deleted key is absent from the result (as ``get`` gives
        ``None`` for it). One call for a batch of keys instead of one per key:
        a client absorbing a batch of messages reads all their records at once.
        """
        self._check_open()
        if isinstance(keys, str):
            raise TypeError(f"get_many takes a sequence of keys; wrap the single {keys!r} "
                            "in a list")
        unique = list(dict.fromkeys(keys))
        for key in unique:
            _require_name("key", key)
        self._counters.reads += 1
        if not unique:
            return {}
        return await self._get_many(unique)

    async def scan(self, prefix: str) -> list[tuple[str, Versioned]]:
        """Every live record whose key starts with ``prefix``, sorted by key."""
        self._check_open()
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, got {prefix!r}")
        self._counters.reads += 1
        return await self._scan(prefix)

    # -- writes ----------------------------------------------------------

    async def write(
        self, ops: Sequence[WriteOp], *, fence: Fence | None = None
    ) -> WriteResult:
        """Apply ``ops`` atomically, optionally fenced by a lease token.

        Raises ``ConflictError`` when a compare-and-set names a version that
        is not current, and ``StaleFencingToken`` when ``fence.token`` is not
        the newest grant of ``fence.lease_key``; in both cases nothing of the
        write was applied.
        """
        self._check_open()
        if isinstance(ops, Append | Put | Delete | Truncate):
            raise TypeError(f"write takes a sequence of ops; wrap the single {ops!r} in a list")
        ops = list(ops)
        for op in ops:
            _validate_op(op)
        if fence is not None:
            if not isinstance(fence, Fence):
                raise TypeError(f"fence must be a Fence, got {fence!r}")
            _require_name("Fence.lease_key", fence.lease_key)
            _require_count("Fence.token", fence.token, 0)
        return await self._counted_write(ops, fence)

    async def _counted_write(self, ops: list[WriteOp], fence: Fence | None) -> WriteResult:
        """``write`` after validation: a wrapping store (``FaultyStore``) forwards here,
        so each op of a write is validated once, not once per layer."""
        self._check_open()
        self._counters.writes += 1
        try:
            result = await self._write(ops, fence)
        except StaleFencingToken:
            self._counters.stale_fences += 1
            raise
        except ConflictError:
            self._counters.conflicts += 1
            raise
        self._counters.entries_appended += sum(
            len(op.entries) for op in ops if isinstance(op, Append)
        )
        return result

    # -- leases ----------------------------------------------------------

    async def acquire(self, key: str, owner: str, ttl: float) -> Lease | None:
        """Grant or renew ``key`` for ``owner`` until ``clock() + ttl``.

        Returns ``None`` while another owner holds an unexpired lease. A
        renewal keeps the token; any other grant gets a new, larger one.
        """
        self._check_open()
        _require_name("lease key", key)
        _require_name("owner", owner)
        if not isinstance(ttl, int | float) or not math.isfinite(ttl) or ttl <= 0:
            raise ValueError(f"ttl must be a finite number of seconds > 0, got {ttl!r}")
        lease = await self._acquire(key, owner, float(ttl), self._clock())
        if lease is not None:
            self._counters.leases_granted += 1
        return lease

    async def release(self, key: str, owner: str, token: int) -> bool:
        """Give up a held lease; ``False`` if ``owner``/``token`` no longer hold it."""
        self._check_open()
        _require_name("lease key", key)
        _require_name("owner", owner)
        _require_count("token", token, 0)
        return await self._release(key, owner, token, self._clock())

    async def lease(self, key: str) -> Lease | None:
        """The unexpired holder of ``key``, if any."""
        self._check_open()
        _require_name("lease key", key)
        self._counters.reads += 1
        return await self._lease(key, self._clock())

    async def revoke(self, key: str) -> bool:
        """Expire the current lease now (fault injection); ``False`` if none was held.

        The token stays the newest, so the ousted holder's fenced writes
        still pass until someone else acquires the lease.
        """
        self._check_open()
        _require_name("lease key", key)
        return await self._revoke(key, self._clock())

    async def leases(self, prefix: str) -> list[Lease]:
        """Unexpired leases whose key starts with ``prefix``, sorted by key."""
        self._check_open()
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, got {prefix!r}")
        self._counters.reads += 1
        return await self._leases(prefix, self._clock())

    async def size(self) -> StoreSize:
        """The bytes the store occupies now (see "Size" in the module docstring)."""
        self._check_open()
        return await self._size()

    # -- lifecycle -------------------------------------------------------

    def statistics(self) -> StoreStatistics:
        c = self._counters
        return StoreStatistics(
            writes=c.writes,
            transactions=c.transactions,
            reads=c.reads,
            conflicts=c.conflicts,
            stale_fences=c.stale_fences,
            entries_appended=c.entries_appended,
            leases_granted=c.leases_granted,
        )

    async def close(self) -> None:
        """Finish queued writes and release the backend; idempotent."""
        if not self._closed:
            self._closed = True
            await self._close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"{self!r} is closed")

    # -- backend hooks (arguments already validated) ----------------------

    @abstractmethod
    async def _read(self, log: str, from_seq: int, limit: int) -> list[LogEntry]: ...

    @abstractmethod
    async def _high_water(self, log: str) -> int: ...

    @abstractmethod
    async def _floor(self, log: str) -> int: ...

    @abstractmethod
    async def _get(self, key: str) -> Versioned | None: ...

    @abstractmethod
    async def _get_many(self, keys: list[str]) -> dict[str, Versioned]:
        """``keys`` are distinct and at least one."""

    @abstractmethod
    async def _scan(self, prefix: str) -> list[tuple[str, Versioned]]: ...

    @abstractmethod
    async def _write(self, ops: list[WriteOp], fence: Fence | None) -> WriteResult: ...

    @abstractmethod
    async def _acquire(self, key: str, owner: str, ttl: float, now: float) -> Lease | None: ...

    @abstractmethod
    async def _release(self, key: str, owner: str, token: int, now: float) -> bool: ...

    @abstractmethod
    async def _lease(self, key: str, now: float) -> Lease | None: ...

    @abstractmethod
    async def _revoke(self, key: str, now: float) -> bool: ...

    @abstractmethod
    async def _leases(self, prefix: str, now: float) -> list[Lease]: ...

    @abstractmethod
    async def _size(self) -> StoreSize: ...

    @abstractmethod
    async def _close(self) -> None: ...
