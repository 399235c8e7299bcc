"""The queue server actor: single writer of its journal.

Every request is planned against the in-memory state, written to the
journal as one entry (one store write, so concurrent requests of all
servers share a group commit), and only then applied and answered. If the
write fails the server crashes on purpose: its supervisor restarts it and
``recover`` rebuilds the state from the journal, so memory never holds
anything the store does not. Messages out when the server went down stay
out (a fresh visibility timeout), so a key never has two out at once.

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
from runtime import Actor, ShardlineError, StoreError, Timer
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
        if self.high_water > 0:
            metrics = self.metrics
            metrics.server_recoveries += 1
            metrics.recovered_messages += sum(q.held for q in state.queues.values())
            rt.trace.record(rt.now(), "queue_recovered", self.name,
                            f"journal {checkpoint.from_seq}..{self.high_water}, "
                            f"{replayed} events")
        self._arm_expiry()

    async def receive(self, msg: QueueServerMsg) -> object:
        state = self.state
        match msg:
            case Take(queue=queue, max_messages=n, per_key=per_key, holder=holder):
                events, taken = state.plan_receive(queue, n, per_key, holder)
                await self._commit(events)
                self._arm_expiry()
                return taken
            case Receive(queue=queue, max_messages=n, per_key=per_key, holder=holder):
                events, taken = state.plan_receive(queue, n, per_key, holder)
                await self._commit(events)
                self._arm_expiry()
                return taken.batches() if taken is not None else []
            case SettleTaken(others=others):
                events, refused, settled = state.plan_settle(others, msg)
                await self._commit(events)
                self.metrics.acks_refused += len(refused)
                return AckResult(settled, refused)
            case Settle(settlements=settlements):
                events, refused, settled = state.plan_settle(settlements)
                await self._commit(events)
                self.metrics.acks_refused += len(refused)
                return AckResult(settled, refused)
            case Enqueue(queue=queue, messages=messages):
                wrong = self.placement.misplaced([m.key for m in messages], self.index)
                if wrong is not None:
                    raise MisroutedMessage(
                        f"{self.name}: key {wrong!r} of queue {queue!r} belongs to "
                        f"server {self.placement(wrong)}")
                events, accepted, duplicates = state.plan_enqueue(queue, messages)
                await self._commit(events)
                self.metrics.duplicates_dropped += duplicates
                return EnqueueResult(accepted, duplicates)
            case Seal(queue=queue):
                await self._commit(state.plan_seal(queue))
            case HolderRestarted(holder=holder):
                await self._commit(state.plan_holder_restarted(holder))
            case Depth(queue=queue):
                return state.depth(queue)
            case ExpireVisibility():
                self._timer, self._timer_at = None, None
                await self._commit(state.plan_expire())
                self._arm_expiry()
        return None

    async def _commit(self, events: list[JournalEvent]) -> None:
        """Journal ``events`` durably, then apply them. A failed write crashes the server."""
        if not events:
            return
        ops: list[Append | Put | Truncate] = [
            Append(self.journal_log, [("", journal.encode(JournalEntry(events)))])]
        dead = self._dead_letters(events)
        if dead:
            ops.append(Append(self.dlq_log, dead))
        self.since_checkpoint += 1
        if self.since_checkpoint >= self.spec.settings.checkpoint_every:
            # Taken before these events apply, so it is conservative: they only add
            # messages at or after this entry, or settle older ones.
            checkpoint = self.state.checkpoint(self.high_water)
            ops.append(Put(self.checkpoint_key, journal.encode(checkpoint),
                           self.checkpoint_version))
            if checkpoint.from_seq > self.floor and await self._audited(checkpoint.from_seq):
                ops.append(Truncate(self.journal_log, checkpoint.from_seq))
        result = await self.runtime.store.write(ops, fence=self._fence())
        seq = result.first_seqs[self.journal_log]
        if self.checkpoint_key in result.versions:
            self.checkpoint_version = result.versions[self.checkpoint_key]
            self.since_checkpoint = 0
        self.floor = result.floors.get(self.journal_log, self.floor)
        self.high_water = seq + 1
        await self.fault_point("after journaling, before applying")
        self.state.apply(events, seq)

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

