"""The queue server actor: single writer of its journal.

Every request is planned against the in-memory state and applied to it at
once, in the order requests arrive, and its events are journaled; its answer
is given only once they are durable. One journal write is out at a time;
what is staged while it is out goes out as the next write, all of it in one
store write (the server's own group commit, on top of the store's), so a
server never waits for a commit between two requests. If a write fails the
server crashes on purpose and every answer still owed fails with it: what
was applied but not written is thrown away with the incarnation, its
supervisor restarts it, and ``recover`` rebuilds the state from the
journal. So no answer ever tells of state the store does not hold, and
memory never holds anything the store will not, once a crash has passed.
Messages out when the server went down stay out (a fresh visibility
timeout), so a key never has two out at once.

Compaction: every ``checkpoint_every`` entries the server writes a
checkpoint (where recovery starts: the oldest entry still holding a message
not acked or dead-lettered, or a dedup id inside the window) and, in the
same write, truncates the journal below it, so acked messages and expired
dedup ids leave the store and recovery reads the checkpoint and the tail
only. With an audit (``runtime.scenario.Audit``; a scenario run keeps one
under ``<out>/audit/``) the entries are first handed to it, so the checks
still see the whole journal.
"""


from __future__ import annotations

import asyncio
import contextlib

from actors.queue import _journal as journal
from actors.queue._journal import (
    DeadLetter,
    JournalEntry,
    JournalEvent,
    MessageDeadLettered,
    ServerCheckpoint,
)
from actors.queue._messages import (
    AckResult,
    Depth,
    Enqueue,
    EnqueueResult,
    ExpireVisibility,
    HolderRestarted,
    JournalFailed,
    QueueDepth,
    QueueServerMsg,
    Receive,
    Seal,
    Settle,
    SettleTaken,
    Take,
)
from actors.queue._metrics import QueueMetrics
from actors.queue._placement import shared_placement
from actors.queue._settings import ServerSpec
from actors.queue._state import ServerState
from runtime import Actor, Deferred, ShardlineError, StoreError, Timer
from runtime.scenario import Audit, audit_before_truncating
from runtime.store import Append, Fence, Put, Truncate

_READ_PAGE = 256


class MisroutedMessage(ShardlineError):
    """An enqueue named a key that rendezvous placement puts on another server."""


class QueueServer(Actor[QueueServerMsg]):
    mailbox_capacity = 4096

    def __init__(self, spec: ServerSpec, metrics: QueueMetrics,
                 audit: Audit | None = None) -> None:
        """Built from a serializable ``spec``, this node's ``metrics`` and, if the
        run keeps one, the ``audit`` that compacted journal entries go to first."""
        self.spec = spec
        self.audit = audit
        self.index = index = spec.index
        self.metrics = metrics
        self.placement = shared_placement(tuple(spec.server_ids))
        self.journal_log = journal.journal_log(spec.cluster, index)
        self.dlq_log = journal.dead_letter_log(spec.cluster, index)
        self.checkpoint_key = journal.checkpoint_key(spec.cluster, index)
        self._timer: Timer | None = None
        self._timer_at: float | None = None

    async def recover(self) -> None:
        """Rebuild the state from the checkpoint and the journal after it."""
        rt = self.runtime
        store = rt.store
        found = await store.get(self.checkpoint_key)
        checkpoint = journal.decode_checkpoint(found.value) if found else ServerCheckpoint()
        self.checkpoint_version = found.version if found else 0
        state = ServerState(self.index, self.spec.settings, rt.now, rt.clock.wall,
                            self.metrics)
        state.restore(checkpoint)
        seq = checkpoint.from_seq
        replayed = 0
        while True:
            page = await store.read(self.journal_log, seq, _READ_PAGE)
            for entry in page:
                events = journal.decode_entry(entry.payload).events
                state.apply(events, entry.seq, live=False)
                replayed += len(events)
            if page:
                seq = page[-1].seq + 1
            if len(page) < _READ_PAGE:
                break
        self.state = state
        self.high_water = max(seq, await store.high_water(self.journal_log))
        self.floor = await store.floor(self.journal_log)
        self.since_checkpoint = 0
        self._next_seq = self.high_water
        self._staging = state.metrics = QueueMetrics()
        """What the requests staged since the last write counted (``_take_staging``)."""
        self._entries: list[bytes] = []
        self._dlq: list[tuple[str, bytes]] = []
        self._owed: list[tuple[asyncio.Future[object], object]] = []
        self._writing: asyncio.Future[None] | None = None
        self._broken: BaseException | None = None
        if self.high_water > 0:
            metrics = self.metrics
            metrics.server_recoveries += 1
            metrics.recovered_messages += sum(q.held for q in state.queues.values())
            rt.trace.record(rt.now(), "queue_recovered", self.name,
                            f"journal {checkpoint.from_seq}..{self.high_water}, "
                            f"{replayed} events")
        self._arm_expiry()

    async def receive(self, msg: QueueServerMsg) -> object:
        if self._broken is not None:
            raise self._broken
        state = self.state
        match msg:
            # a receive's visibility deadline is set once its write is durable
            # (``_write_staged`` arms the timer then), not here
            case Take(queue=queue, max_messages=n, per_key=per_key, holder=holder):
                events, taken = state.plan_receive(queue, n, per_key, holder)
                return self._stage(events, taken)
            case Receive(queue=queue, max_messages=n, per_key=per_key, holder=holder):
                events, taken = state.plan_receive(queue, n, per_key, holder)
                return self._stage(events, taken.batches() if taken is not None else [])
            case SettleTaken(others=others):
                events, refused, settled = state.plan_settle(others, msg)
                self._staging.acks_refused += len(refused)
                return self._stage(events, AckResult(settled, refused))
            case Settle(settlements=settlements):
                events, refused, settled = state.plan_settle(settlements)
                self._staging.acks_refused += len(refused)
                return self._stage(events, AckResult(settled, refused))
            case Enqueue(queue=queue, messages=messages):
                wrong = self.placement.misplaced([m.key for m in messages], self.index)
                if wrong is not None:
                    raise MisroutedMessage(
                        f"{self.name}: key {wrong!r} of queue {queue!r} belongs to "
                        f"server {self.placement(wrong)}")
                events, accepted, duplicates = state.plan_enqueue(queue, messages)
                self._staging.duplicates_dropped += duplicates
                return self._stage(events, EnqueueResult(accepted, duplicates))
            case Seal(queue=queue):
                return self._stage(state.plan_seal(queue), None)
            case HolderRestarted(holder=holder):
                return self._stage(state.plan_holder_restarted(holder), None)
            case Depth(queue=queue):
                return self._stage([], state.depth(queue))
            case ExpireVisibility():
                self._timer, self._timer_at = None, None
                self._stage(state.plan_expire(), None)
                self._arm_expiry()
            case JournalFailed():
                if self._broken is not None:  # else a notice to an earlier incarnation
                    raise self._broken
        return None

    # -- the journal: apply at once, answer once durable ------------------------------

    def _stage(self, events: list[JournalEvent], value: object) -> object:
        """Apply ``events`` now and journal them with the next write; the answer
        ``value`` is given once they (and everything applied before them) are durable.

        Every request is applied in the order it came, so each plan sees the ones
        before it, and the journal holds them in that order. One write is out at a
        time: what is staged meanwhile goes out as the next write, in one store
        write (a server's own group commit). No answer leaves before its events are
        durable, and a failed write crashes the server, so an answer never tells of
        state the journal does not hold: what was applied but not written is thrown
        away with the incarnation, and recovery rebuilds from the journal.
        """
        if events:
            dead = self._dead_letters(events)  # they read what applying removes
            seq = self._next_seq
            self._next_seq = seq + 1
            self._entries.append(journal.encode(JournalEntry(events)))
            if dead:
                self._dlq.extend(dead)
            self.state.apply(events, seq, staged=True)
        elif self._writing is None and not self._entries:
            # nothing unwritten: the answer (a refusal, say) is already durable
            self.metrics.add(self._take_staging())
            return value
        answer: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._owed.append((answer, value))
        if self._writing is None:
            self._writing = asyncio.ensure_future(self._write_staged())
        return Deferred(answer)

    def _take_staging(self) -> QueueMetrics:
        """What the requests staged since the last take counted, and a fresh count for
        the next ones. It joins ``metrics`` only once their write is durable (or at once
        when nothing is unwritten): a run counts nothing the journal does not hold."""
        counted = self._staging
        self._staging = self.state.metrics = QueueMetrics()
        return counted

    async def _write_staged(self) -> None:
        """Write what is staged, again and again, until nothing is (one write out)."""
        try:
            while self._owed and self._broken is None:
                entries, self._entries = self._entries, []
                dead, self._dlq = self._dlq, []
                answers, self._owed = self._owed, []
                first = self._next_seq - len(entries)
                receives = self.state.unconfirmed_receives
                counted = self._take_staging()
                try:
                    await self._write(entries, dead, first)
                    if entries:
                        await self.fault_point("after journaling, before answering")
                except Exception as exc:
                    self._break(exc, answers)
                    return
                except asyncio.CancelledError:  # stopped() gave up waiting for it
                    _fail(answers, self._broken or StoreError(f"{self.name}: write abandoned"))
                    raise
                # handed out now: the batches' visibility timeouts start, and the
                # counts and latencies of what is durable join the run's
                self.state.confirm_receives(receives)
                self.metrics.add(counted)
                self._arm_expiry()
                for answer, value in answers:
                    if not answer.done():
                        answer.set_result(value)
        finally:
            self._writing = None

    async def _write(self, entries: list[bytes], dead: list[tuple[str, bytes]],
                     first: int) -> None:
        """One store write: the entries (first at seq ``first``), their dead letters and,
        every ``checkpoint_every`` entries, a checkpoint that compacts the journal."""
        ops: list[Append | Put | Truncate] = []
        if entries:
            ops.append(Append(self.journal_log, [("", e) for e in entries]))
        if dead:
            ops.append(Append(self.dlq_log, dead))
        self.since_checkpoint += len(entries)
        if entries and self.since_checkpoint >= self.spec.settings.checkpoint_every:
            # Taken with exactly these entries applied and nothing after them (this
            # runs before any await), and capped at their first seq: recovery replays
            # them, and nothing it needs lies below.
            checkpoint = self.state.checkpoint(first)
            ops.append(Put(self.checkpoint_key, journal.encode(checkpoint),
                           self.checkpoint_version))
            if checkpoint.from_seq > self.floor and await self._audited(checkpoint.from_seq):
                ops.append(Truncate(self.journal_log, checkpoint.from_seq))
        if not ops:
            return
        result = await self.runtime.store.write(ops, fence=self._fence())
        if entries:
            seq = result.first_seqs[self.journal_log]
            if seq != first:
                raise StoreError(f"{self.name}: journal entries landed at seq {seq}, "
                                 f"expected {first} (another writer?)")
            self.high_water = first + len(entries)
        if self.checkpoint_key in result.versions:
            self.checkpoint_version = result.versions[self.checkpoint_key]
            self.since_checkpoint = 0
        self.floor = result.floors.get(self.journal_log, self.floor)

    def _break(self, error: BaseException, answers: list[tuple[asyncio.Future[object],
                                                                 object]]) -> None:
        """A write failed: every answer not given fails with ``error``, and the server
        crashes at its next message (one is sent) and recovers from the journal."""
        self._broken = error
        _fail([*answers, *self._owed], error)
        self._owed.clear()
        with contextlib.suppress(ShardlineError):
            self.ref.tell_nowait(JournalFailed())

    async def stopped(self) -> None:
        """Let the write that is out finish (the next incarnation must read it back,
        and its answers are given if it succeeded), write nothing more, and fail every
        answer still owed: those requests were applied here but never journaled, and
        each is safe to repeat. Stopped past its ``shutdown_timeout`` (cancelled), it
        cancels the write instead and waits until it is given up: a write left out
        could land after the next incarnation's first entries, at the offsets that
        one hands out again."""
        if not hasattr(self, "_owed"):  # stopped before recover ran
            return
        if self._broken is None:
            self._broken = StoreError(f"{self.name} stopped before journaling a request")
        writing = self._writing
        if writing is not None:
            try:
                await asyncio.shield(writing)
            except asyncio.CancelledError:
                writing.cancel()
                await asyncio.wait({writing})
        _fail(self._owed, self._broken)
        self._owed.clear()

    def _fence(self) -> Fence | None:
        """The fence the journal is written under: none in one process; the entity's
        lease across nodes (``_entity``), so a server that moved cannot write twice."""
        return None

    async def _audited(self, before: int) -> bool:
        """Hand the journal entries below ``before`` to the audit (if any): may they be
        truncated? A failed read compacts nothing this time (the checkpoint is still
        written, and the next one truncates)."""
        try:
            await audit_before_truncating(self.runtime.store, self.audit, self.journal_log,
                                          self.floor, before)
        except StoreError as exc:
            self.log.warning("queue.audit_failed", error=f"{type(exc).__name__}: {exc}")
            return False
        return True

    def _dead_letters(self, events: list[JournalEvent]) -> list[tuple[str, bytes]]:
        found: list[tuple[str, bytes]] = []
        for e in events:
            if isinstance(e, MessageDeadLettered):
                held = self.state.held(e.queue, e.key, e.offset)
                if held is None:
                    continue
                letter = DeadLetter(self.index, e.queue, e.offset, held.receives, e.at,
                                    e.reason, held.message)
                found.append((e.queue, journal.encode(letter)))
                self.runtime.trace.record(self.runtime.now(), "dead_lettered", self.name,
                                          f"{e.queue}/{e.key}@{e.offset}")
        return found

    def _arm_expiry(self) -> None:
        """Keep one timer set for the earliest visibility deadline."""
        deadline = self.state.next_deadline()
        if deadline is None or (self._timer_at is not None and self._timer_at <= deadline):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        # a hair late, so the deadline has surely passed when the timer fires
        delay = max(0.0, deadline - self.runtime.now()) + 1e-6
        self._timer = self.send_after(delay, ExpireVisibility())

    def depth(self, queue: str) -> QueueDepth:
        return self.state.depth(queue)


def _fail(owed: list[tuple[asyncio.Future[object], object]], error: BaseException) -> None:
    """Fail each answer still open with ``error``. A ``tell`` (a timer) has nobody to read
    it: the failure is marked read, so asyncio does not log it as lost."""
    for answer, _ in owed:
        if not answer.done():
            answer.set_exception(error)
            answer.exception()
