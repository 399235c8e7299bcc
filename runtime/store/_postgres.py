"""``postgresql://``: the contract in one PostgreSQL schema that many processes share.

Policy (read this before the mechanism)

Sharing. Any number of stores, in any processes on any machines, may open
one schema at once; nothing is cached between calls, so every read sees
what any of them committed. A write is one transaction that first locks
the rows its outcome depends on, then decides, then applies:

- fencing: the lease row is locked (``SELECT ... FOR UPDATE``) and its
  newest token compared in the same transaction as the ops, so a grant to
  another owner either commits first (and the write is refused with
  ``StaleFencingToken``, nothing applied) or waits for the write's COMMIT;
- compare-and-set: the record rows are locked before versions are compared;
- logs: each log's row in ``logs`` (its next seq) is locked, so appends from
  several processes are numbered consecutively, with no gap.

Time. Lease grants and expiry need one clock everybody agrees on. Opened
with a clock that reads real time (``time.time``, ``time.monotonic``, or the
``wall`` clock of a runtime on a real loop; see ``runtime._clock``), the
store ignores it and judges by the database server's clock
(``clock_timestamp()``, in epoch seconds, which ``Lease.expires_at`` then
holds), so processes whose clocks disagree cannot both hold a lease. Any
other clock (simulated time, a test's fake clock) is used as given, exactly
as by the other backends: a simulated run's leases follow virtual time.

Group commit. Writes issued in one loop iteration commit together as one
batch, in one transaction; up to half the pool's connections commit
batches at once (so one batch's COMMIT latency overlaps the next batch's
work), and writes issued while every slot is busy queue up for the next
free one. In its transaction a batch locks everything it touches with one
statement (in one order: leases, logs, records, each by key, so batches
queue on each other rather than deadlock; should PostgreSQL still find a
deadlock, it fails one batch, whose writes raise ``StoreError``), then
``_rules.plan_batch`` decides each write in order against that state (a
refused write contributes nothing, as if rolled back to a savepoint of its
own, without a round trip per write), then one set-based
statement applies every effect: four round trips per batch (BEGIN, lock,
apply, COMMIT) however many writes it holds. A write returns after its
batch's COMMIT, so an acknowledged write survives a crash of this process
or of the server.

Failures. Every database failure raises ``StoreError`` naming host, port and
database (never the password); a refused write of a batch fails alone, a
failed statement fails its whole batch, nothing applied. The pool replaces
broken connections on later calls, so a store outlives a server restart.
A write whose connection broke during COMMIT may have been applied (its
error says the outcome is unknown); re-reading tells, as for a cancelled
write.

Simulated time. Every await on the database runs inside
``_simloop.real_io()``: virtual time stands still while a reply is out.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg

from runtime._clock import reads_real_time
from runtime._errors import StoreError
from runtime._simloop import real_io
from runtime.store._base import Store
from runtime.store._postgres_connect import DATABASE_ERRORS, Connection, failure, open_pool
from runtime.store._postgres_schema import BatchStatements, quoted, unstorable
from runtime.store._postgres_target import PostgresTarget
from runtime.store._rules import (
    RecordState,
    grant_lease,
    is_held,
    may_release,
    plan_batch,
    prefix_end,
)
from runtime.store._types import (
    Append,
    Clock,
    Delete,
    Fence,
    Lease,
    LogEntry,
    Put,
    StoreSize,
    Truncate,
    Versioned,
    WriteOp,
    WriteResult,
)

_DB_NOW = "extract(epoch FROM clock_timestamp())::float8"
_MAX_BATCH = 1024
"""Writes per transaction: a bound on how long one COMMIT holds its row locks."""


@dataclass(slots=True)
class _QueuedWrite:
    ops: list[WriteOp]
    fence: Fence | None
    future: asyncio.Future[WriteResult]


async def open_postgres(target: PostgresTarget, *, clock: Clock) -> PostgresStore:
    """Connect, create or check the schema; ``StoreError`` names the server and the cause."""
    return PostgresStore(await open_pool(target), target, clock)


class PostgresStore(Store):
    def __init__(self, pool: asyncpg.Pool, target: PostgresTarget, clock: Clock) -> None:
        super().__init__(clock)
        self._pool = pool
        self.target = target
        self.database_clock = reads_real_time(clock)
        """True: leases are judged by the server's clock, not ``clock``."""
        self._s = quoted(target.schema)
        self._batch = BatchStatements(target.schema)
        self._queue: list[_QueuedWrite] = []
        self._batches: set[asyncio.Task[None]] = set()
        self._batch_scheduled = False
        self._slots = max(1, target.pool_size // 2)
        """Batches committing at once; the other half of the pool serves reads and leases."""

    def __repr__(self) -> str:
        return f"<PostgresStore {self.target.describe()}>"

    @asynccontextmanager
    async def _connection(self, action: str) -> AsyncIterator[Connection]:
        """A pooled connection, time held still, database failures as ``StoreError``."""
        with real_io():
            try:
                async with self._pool.acquire() as conn:
                    yield conn
            except DATABASE_ERRORS as exc:
                raise StoreError(failure(self.target, f"{action} failed", exc)) from exc

    # -- logs and records ---------------------------------------------------

    async def _read(self, log: str, from_seq: int, limit: int) -> list[LogEntry]:
        async with self._connection(f"read of log {log!r}") as conn:
            rows = await conn.fetch(
                f"SELECT seq, key, payload FROM {self._s}.log_entries "
                "WHERE log = $1 AND seq >= $2 ORDER BY seq LIMIT $3", log, from_seq, limit)
        return [LogEntry(seq, key, payload) for seq, key, payload in rows]

    async def _high_water(self, log: str) -> int:
        async with self._connection(f"high water of log {log!r}") as conn:
            seq = await conn.fetchval(f"SELECT next_seq FROM {self._s}.logs WHERE log = $1", log)
        return 0 if seq is None else int(seq)

    async def _floor(self, log: str) -> int:
        async with self._connection(f"floor of log {log!r}") as conn:
            floor = await conn.fetchval(f"SELECT floor FROM {self._s}.logs WHERE log = $1", log)
        return 0 if floor is None else int(floor)

    async def _get(self, key: str) -> Versioned | None:
        found = await self._get_many([key])
        return found.get(key)

    async def _get_many(self, keys: list[str]) -> dict[str, Versioned]:
        async with self._connection(f"get of {len(keys)} key(s)") as conn:
            rows = await conn.fetch(
                f"SELECT key, value, version FROM {self._s}.records "
                "WHERE key = ANY($1::text[]) AND value IS NOT NULL", keys)
        return {key: Versioned(value, version) for key, value, version in rows}

    async def _scan(self, prefix: str) -> list[tuple[str, Versioned]]:
        sql = f"SELECT key, value, version FROM {self._s}.records WHERE key >= $1 " \
              "AND value IS NOT NULL"
        args: list[str] = [prefix]
        if end := prefix_end(prefix):
            sql, args = sql + " AND key < $2", [prefix, end]
        async with self._connection(f"scan of prefix {prefix!r}") as conn:
            rows = await conn.fetch(sql + " ORDER BY key", *args)
        return [(key, Versioned(value, version)) for key, value, version in rows]

    # -- group commit -------------------------------------------------------

    async def _write(self, ops: list[WriteOp], fence: Fence | None) -> WriteResult:
        if problem := unstorable(ops, fence):
            raise StoreError(f"write to postgresql store at {self.target} refused: {problem}")
        future: asyncio.Future[WriteResult] = asyncio.get_running_loop().create_future()
        self._queue.append(_QueuedWrite(ops, fence, future))
        self._schedule_batch()
        return await future

    def _schedule_batch(self) -> None:
        """Start a batch at the end of this loop iteration if a slot is free: the writes
        issued meanwhile join it, the rest wait for the next free slot."""
        if self._queue and not self._batch_scheduled and len(self._batches) < self._slots:
            self._batch_scheduled = True
            asyncio.get_running_loop().call_soon(self._start_batch)

    def _start_batch(self) -> None:
        self._batch_scheduled = False
        batch = [w for w in self._queue[:_MAX_BATCH] if not w.future.done()]  # done: cancelled
        del self._queue[:_MAX_BATCH]
        if batch:
            task = asyncio.get_running_loop().create_task(self._run_batch(batch))
            self._batches.add(task)
            task.add_done_callback(self._batch_done)
        else:
            self._schedule_batch()

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._batches.discard(task)
        self._schedule_batch()

    async def _run_batch(self, batch: list[_QueuedWrite]) -> None:
        outcomes: list[WriteResult | Exception] = []
        try:
            outcomes = await self._commit(batch)
        finally:  # outcomes stay empty only if this task was cancelled
            for queued, outcome in itertools.zip_longest(batch, outcomes):
                if queued.future.done():
                    continue  # its caller was cancelled; the outcome stands unseen
                if outcome is None:
                    queued.future.set_exception(StoreError(
                        f"write to postgresql store at {self.target} abandoned: its commit "
                        "was cancelled; the outcome is unknown"))
                elif isinstance(outcome, BaseException):
                    queued.future.set_exception(outcome)
                else:
                    queued.future.set_result(outcome)

    async def _commit(self, batch: list[_QueuedWrite]) -> list[WriteResult | Exception]:
        """Either COMMIT with per-write outcomes, or fail every write of the batch."""
        action = f"commit of {len(batch)} write(s)"
        try:
            async with self._connection(action) as conn:
                transaction = conn.transaction()
                await transaction.start()
                try:
                    outcomes = await self._apply_batch(conn, batch)
                except BaseException:
                    if not conn.is_closed():
                        await transaction.rollback()
                    raise
                try:
                    await transaction.commit()
                except DATABASE_ERRORS as exc:
                    raise StoreError(failure(
                        self.target, f"{action} failed at COMMIT (outcome unknown: re-read "
                        "to tell whether it applied)", exc)) from exc
        except StoreError as exc:
            return [self._batch_failure(exc) for _ in batch]
        self._counters.transactions += 1
        return outcomes

    @staticmethod
    def _batch_failure(exc: StoreError) -> StoreError:
        error = StoreError(str(exc))
        error.__cause__ = exc.__cause__
        return error

    async def _lock_batch(
        self, conn: Connection, fences: list[str], logs: list[str], keys: list[str]
    ) -> tuple[dict[str, int], dict[str, int], dict[str, int], dict[str, RecordState]]:
        """Lock what a batch reads (see ``BatchStatements``): tokens, next seqs, floors,
        records."""
        tokens: dict[str, int] = {}
        next_seqs: dict[str, int] = {}
        floors: dict[str, int] = {}
        records: dict[str, RecordState] = {}
        rows = list(await conn.fetch(self._batch.lock, fences, logs, keys))
        while True:
            for kind, name, number, value in rows:
                if kind == "f":
                    tokens[name] = number
                elif kind == "l":
                    next_seqs[name] = number
                elif kind == "b":
                    floors[name] = number
                else:
                    records[name] = RecordState(value, number)
            stray_logs = [log for log in logs if log not in next_seqs]
            stray_keys = [key for key in keys if key not in records]
            if not stray_logs and not stray_keys:
                return tokens, next_seqs, floors, records
            rows = list(await conn.fetch(self._batch.relock_logs, stray_logs))
            rows += await conn.fetch(self._batch.relock_records, stray_keys)

    async def _apply_batch(
        self, conn: Connection, batch: list[_QueuedWrite]
    ) -> list[WriteResult | Exception]:
        tokens, next_seqs, floors, records = await self._lock_batch(
            conn,
            sorted({w.fence.lease_key for w in batch if w.fence is not None}),
            sorted({op.log for w in batch for op in w.ops if isinstance(op, Append | Truncate)}),
            sorted({op.key for w in batch for op in w.ops if isinstance(op, Put | Delete)}))
        plan = plan_batch([(w.ops, w.fence) for w in batch], next_seq=next_seqs.__getitem__,
                          record_state=records.get, newest_token=lambda key: tokens.get(key, 0),
                          floor=floors.__getitem__)
        entries, moved_logs, changed, raised = plan.rows, plan.next_seqs, plan.records, plan.floors
        if entries or moved_logs or changed:
            columns: list[tuple[object, ...]] = (
                list(zip(*entries, strict=True)) if entries else [(), (), (), ()])
            await conn.execute(
                self._batch.apply, *columns, list(moved_logs), list(moved_logs.values()),
                list(changed), [s.value for s in changed.values()],
                [s.version for s in changed.values()])
        if raised:
            await conn.execute(self._batch.truncate, list(raised), list(raised.values()))
        return plan.outcomes

    # -- leases -------------------------------------------------------------

    def _judged(self, key: str, row: Any, now: float) -> tuple[Lease | None, int, float]:
        """(last grant not released, newest token, the time to judge it by) of a row."""
        if row is None:
            return None, 0, now
        owner, token, expires_at, db_now = row
        when = db_now if self.database_clock else now
        return (None if owner is None else Lease(key, owner, token, expires_at)), token, when

    def _lease_row_sql(self, lock: bool) -> str:
        return (f"SELECT owner, token, expires_at, {_DB_NOW} FROM {self._s}.leases "
                "WHERE key = $1" + (" FOR UPDATE" if lock else ""))

    async def _acquire(self, key: str, owner: str, ttl: float, now: float) -> Lease | None:
        async with self._connection(f"acquire of lease {key!r}") as conn, conn.transaction():
            await conn.execute(
                f"INSERT INTO {self._s}.leases (key, owner, token, expires_at) "
                "VALUES ($1, NULL, 0, 0) ON CONFLICT DO NOTHING", key)
            current, newest, when = self._judged(
                key, await conn.fetchrow(self._lease_row_sql(lock=True), key), now)
            lease = grant_lease(current, newest, key, owner, ttl, when)
            if lease is not None:
                await conn.execute(
                    f"UPDATE {self._s}.leases SET owner = $2, token = $3, expires_at = $4 "
                    "WHERE key = $1", key, owner, lease.token, lease.expires_at)
        if lease is not None:
            self._counters.transactions += 1
        return lease

    async def _release(self, key: str, owner: str, token: int, now: float) -> bool:
        async with self._connection(f"release of lease {key!r}") as conn, conn.transaction():
            current, _, when = self._judged(
                key, await conn.fetchrow(self._lease_row_sql(lock=True), key), now)
            if not may_release(current, owner, token, when):
                return False
            await conn.execute(f"UPDATE {self._s}.leases SET owner = NULL WHERE key = $1", key)
        self._counters.transactions += 1
        return True

    async def _lease(self, key: str, now: float) -> Lease | None:
        async with self._connection(f"lease lookup of {key!r}") as conn:
            row = await conn.fetchrow(self._lease_row_sql(lock=False), key)
        current, _, when = self._judged(key, row, now)
        return current if is_held(current, when) else None

    async def _revoke(self, key: str, now: float) -> bool:
        async with self._connection(f"revoke of lease {key!r}") as conn, conn.transaction():
            current, _, when = self._judged(
                key, await conn.fetchrow(self._lease_row_sql(lock=True), key), now)
            if not is_held(current, when):
                return False
            await conn.execute(
                f"UPDATE {self._s}.leases SET expires_at = $2 WHERE key = $1", key, when)
        self._counters.transactions += 1
        return True

    async def _leases(self, prefix: str, now: float) -> list[Lease]:
        sql = (f"SELECT key, owner, token, expires_at, {_DB_NOW} FROM {self._s}.leases "
               "WHERE key >= $1 AND owner IS NOT NULL")
        args: list[str] = [prefix]
        if end := prefix_end(prefix):
            sql, args = sql + " AND key < $2", [prefix, end]
        async with self._connection(f"lease scan of prefix {prefix!r}") as conn:
            rows = await conn.fetch(sql + " ORDER BY key", *args)
        held = []
        for key, owner, token, expires_at, db_now in rows:
            lease = Lease(key, owner, token, expires_at)
            if is_held(lease, db_now if self.database_clock else now):
                held.append(lease)
        return held

    async def _size(self) -> StoreSize:
        async with self._connection("size of the schema's tables") as conn:
            total = await conn.fetchval(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = $1 AND c.relkind = 'r'", self.target.schema)
        return StoreSize(int(total), "pg_total_relation_size of the schema's tables")

    async def _close(self) -> None:
        while self._queue or self._batches or self._batch_scheduled:  # queued writes commit
            if self._batches:
                await asyncio.wait(set(self._batches))
            else:
                await asyncio.sleep(0)
        with real_io():
            try:
                await asyncio.wait_for(self._pool.close(), timeout=10)
            except DATABASE_ERRORS:  # TimeoutError included
                self._pool.terminate()
