"""Tier clients: ``map`` (1 -> 1) and ``reduce`` (windows of N -> 1).

Both keep the rule that makes a contribution count once: an input is acked
only after what it contributed is durable downstream (a map output in the
next queue, a reduce member in its window record), and every output's id is
derived from its inputs' ids, so a client that repeats work after a crash,
or whose ack comes after its visibility timeout, produces only duplicates,
which the queue drops.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from actors.queue import _windows as windows
from actors.queue._consumer import QueueConsumer
from actors.queue._functions import TierStep
from actors.queue._ledger import output_id
from actors.queue._messages import Delivery, QueuedMessage, Receipt
from actors.queue._windows import Member, WindowState
from runtime import ConflictError, ShardlineError
from runtime.store import Append, Put

if TYPE_CHECKING:
    from actors.queue._pipeline import QueuePipeline

_CONFLICT_ROUNDS = 8


class TierClient(QueueConsumer):
    def __init__(self, pipeline: QueuePipeline, tier: int) -> None:
        super().__init__(pipeline, pipeline.input_queue(tier))
        self.tier = tier
        self.step: TierStep = pipeline.steps[tier]
        self.out_queue = pipeline.output_queue(tier)
        self.full = pipeline.full
        self.cost = self.step.config.process_cost

    async def spend(self) -> None:
        """The configured processing time of one batch (its messages run side by side)."""
        if self.cost > 0:
            await asyncio.sleep(self.cost)


class MapClient(TierClient):
    """One output per input, enqueued before the input is acked."""

    async def handle(self, deliveries: list[Delivery]) -> None:
        step = self.step
        name = step.name
        outputs: list[QueuedMessage] = []
        done: list[Receipt] = []
        failed: list[tuple[Receipt, BaseException]] = []
        for d in deliveries:
            m = d.message
            try:
                key, body = step.map(m.key, m.body)
            except Exception as exc:
                failed.append((d.receipt, exc))
                continue
            outputs.append(QueuedMessage(output_id(name, (m.id,)), key, body, m.ledger, [m.id]))
            done.append(d.receipt)
        await self.spend()
        await self.fault_point("after processing, before enqueueing outputs")
        if outputs:
            result = await self.cluster.enqueue(self.out_queue, outputs, self.retry)
            self.metrics.outputs_enqueued += result.accepted
        await self.fault_point("after enqueueing outputs, before acking inputs")
        await self.ack(done)
        await self.release(failed)


class ReduceClient(TierClient):
    """Absorbs each input into its key's window (log + state record); see ``_windows``."""

    async def started(self) -> None:
        await super().started()
        name = self.pipeline.config.name
        self.prefix = windows.window_prefix(name, self.step.name)

    def log_of(self, key: str) -> str:
        return windows.window_log(self.pipeline.config.name, self.step.name, key)

    async def _states(self, deliveries: list[Delivery]) -> dict[str, tuple[WindowState, int]]:
        """The window (state, version) of every key in the batch, read in one store call."""
        prefix = self.prefix
        keys = list(dict.fromkeys(d.message.key for d in deliveries))
        records = [prefix + key for key in keys]
        found = await self.store_call("window read",
                                      lambda: self.runtime.store.get_many(records))
        states: dict[str, tuple[WindowState, int]] = {}
        for key, record in zip(keys, records, strict=True):
            stored = found.get(record)
            states[key] = ((windows.decode(stored.value), stored.version) if stored
                           else (windows.EMPTY, 0))
        return states

    async def _members(self, key: str, state: WindowState) -> list[Member]:
        store = self.runtime.store
        return await self.store_call(
            "window log read", lambda: windows.members(store, self.log_of(key), state))

    async def handle(self, deliveries: list[Delivery]) -> None:
        for _ in range(_CONFLICT_ROUNDS):
            try:
                await self._absorb_all(deliveries)
                return
            except ConflictError as exc:
                # Another writer (a stale client, the flush or the time sweep) moved
                # a window first: re-read the windows and redo the batch.
                self.metrics.window_conflicts += 1
                self.log.info("queue.window_conflict", error=str(exc))
        raise ShardlineError(f"{self.name}: window conflicts on {_CONFLICT_ROUNDS} tries")

    async def _absorb_all(self, deliveries: list[Delivery]) -> None:
        step = self.step
        now = self.runtime.clock.wall()
        states = await self._states(deliveries)
        leftover = [p for state, _ in states.values() for p in state.pending]
        if leftover:  # a predecessor closed these windows and stopped before enqueueing
            await self._enqueue(leftover)
        puts: dict[str, WindowState] = {}
        appends: dict[str, Member] = {}
        done: list[Receipt] = []
        failed: list[tuple[Receipt, BaseException]] = []
        for d in deliveries:
            m = d.message
            state = windows.without_pending(states[m.key][0])
            if d.receipt.offset <= state.last_offset:
                done.append(d.receipt)  # absorbed before; the ack was lost
                if states[m.key][0].pending:
                    puts[m.key] = state
                continue
            member = windows.Member(m.id, m.body, m.ledger)
            closing = windows.should_close(state, now, step)
            # a store failure here is not the message's fault: it crashes the client
            prior = (await self._members(m.key, state)
                     if closing or step.checks_combinations else [])
            try:
                step.admit(m.key, m.body)
                if prior and not closing:
                    # the member whose joining makes the window fail is refused
                    # here, so a window never holds members it cannot be closed with
                    step.reduce(m.key, [*(p.body for p in prior), m.body])
                if closing:
                    puts[m.key] = windows.close(
                        WindowState(d.receipt.offset, state.opened_at, state.first_seq,
                                    state.count), [*prior, member], m.key, step, self.full)
                else:
                    appends[m.key] = member
                    puts[m.key] = WindowState(
                        d.receipt.offset, state.opened_at if state.count else now,
                        state.first_seq, state.count + 1)
            except Exception as exc:
                failed.append((d.receipt, exc))
                if states[m.key][0].pending:
                    puts[m.key] = state
                continue
            done.append(d.receipt)
        await self.spend()
        await self.fault_point("after processing, before recording windows")
        versions = await self._write(puts, appends, states)
        closed = [p for state in puts.values() for p in state.pending]
        if closed:
            self.metrics.windows_closed += len(closed)
            await self._enqueue(closed)
        if closed:
            # Cleared before the inputs are acked: a record still holding outputs
            # after its inputs were acked would be re-sent by the next writer of the
            # key, possibly after the dedup window. Until the ack, a crash here only
            # brings the inputs back, and their redelivery re-sends (deduplicated).
            cleared = {k: windows.without_pending(s) for k, s in puts.items() if s.pending}
            # on a conflict, whoever moved first saw the pending outputs and enqueued them
            with contextlib.suppress(ConflictError):
                await self._write(cleared, {}, {k: (puts[k], versions[k]) for k in cleared})
        await self.fault_point("after recording windows, before acking inputs")
        await self.ack(done)
        await self.release(failed)

    async def _write(self, puts: dict[str, WindowState], appends: dict[str, Member],
                     base: dict[str, tuple[WindowState, int]]) -> dict[str, int]:
        """Compare-and-set every window (with its new member) in one atomic write."""
        if not puts:
            return {}
        ops: list[Append | Put] = []
        for key, state in puts.items():
            member = appends.get(key)
            if member is not None:
                ops.append(Append(self.log_of(key), [(member.id, windows.encode(member))]))
            ops.append(Put(self.prefix + key, windows.encode(state), base[key][1]))
        result = await self.store_call("window write", lambda: self.runtime.store.write(ops))
        return {key: result.versions[self.prefix + key] for key in puts}

    async def _enqueue(self, outputs: list[QueuedMessage]) -> None:
        result = await self.cluster.enqueue(self.out_queue, outputs, self.retry)
        self.metrics.outputs_enqueued += result.accepted
