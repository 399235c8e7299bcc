"""Tier clients: ``map`` (1 -> 1) and ``reduce`` (windows of N -> 1).

Both receive batches (consecutive messages of a key; for a reduce tier a
whole window, which its queue server keeps and hands out as one batch) and
keep the rule that makes a contribution count once: a batch is settled only
after its outputs are durable in the next queue, and every output's id is
derived from its inputs' ids, so a client that repeats work after a crash,
or whose settlement comes after its visibility timeout, produces only
duplicates, which the queue drops. A window handed out again is the same
members, so its output has the same id.

A message that fails is named in the settlement: a map batch acks the
messages before it (their outputs are enqueued) and gives back the rest;
a window acks nothing and blames one member (see ``_functions``).
"""

from __future__ import annotations

import asyncio
import bisect

from actors.queue._consumer import QueueConsumer
from actors.queue._context import PipelineContext
from actors.queue._functions import MemberFailed, TierStep
from actors.queue._ledger import merge_ledgers, output_id, output_ids_of_each
from actors.queue._messages import QueuedMessage, Settlement, Taken


def reason_of(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class TierClient(QueueConsumer):
    def __init__(self, ctx: PipelineContext, tier: int) -> None:
        super().__init__(ctx, ctx.input_queue(tier))
        self.tier = tier
        self.step: TierStep = ctx.steps[tier]
        self.out_queue = ctx.output_queue(tier)
        self.full = ctx.full
        self.cost = self.step.config.process_cost

    async def spend(self) -> None:
        """The configured processing time of one receive (its batches run side by side)."""
        if self.cost > 0:
            await asyncio.sleep(self.cost)

    async def pass_on(self, outputs: list[QueuedMessage],
                      settled: list[tuple[Taken, list[Settlement]]]) -> None:
        """Enqueue the outputs, then settle the inputs they came from."""
        await self.spend()
        await self.fault_point("after processing, before enqueueing outputs")
        if outputs:
            result = await self.cluster.enqueue(self.out_queue, outputs, self.retry)
            self.metrics.outputs_enqueued += result.accepted
        await self.fault_point("after enqueueing outputs, before acking inputs")
        await self.settle(settled)


class MapClient(TierClient):
    """One output per input; a batch is mapped in order up to its first failure."""

    async def handle(self, takes: list[Taken]) -> None:
        outputs: list[QueuedMessage] = []
        settled = [(taken, self._map_taken(taken, outputs)) for taken in takes]
        await self.pass_on(outputs, settled)

    def _map_taken(self, taken: Taken, outputs: list[QueuedMessage]) -> list[Settlement]:
        """Add the outputs of ``taken``'s messages to ``outputs`` (whole columns at a
        time); the settlements of its batches that failed (the messages of a batch
        after its failure are given back, so they have no output)."""
        step = self.step
        messages = taken.messages
        keys = [m.key for m in messages]  # (a comprehension reads a field faster than
        bodies = [m.body for m in messages]  # attrgetter does: its LOAD_ATTR is specialized)
        failed: list[Settlement] = []
        at = 0
        while True:
            out_keys, out_bodies, exc = step.map_many(keys[at:], bodies[at:])
            done = at + len(out_keys)
            inputs = messages[at:done]
            ids = [m.id for m in inputs]
            outputs.extend(map(QueuedMessage, output_ids_of_each(step.name, ids), out_keys,
                               out_bodies, [m.ledger for m in inputs], zip(ids)))
            if exc is None:
                return failed
            # only now find the batch: which one a message is in costs nothing per
            # message while none fails
            starts = taken.starts()
            batch = bisect.bisect_right(starts, done) - 1
            acked = done - starts[batch]
            failed.append(Settlement(taken.receipt(batch), acked, acked, reason_of(exc)))
            at = starts[batch] + taken.counts[batch]  # the rest of the batch: given back
            if at >= len(messages):
                return failed


class ReduceClient(TierClient):
    """One output per window (a whole batch), or the failing member named."""

    async def handle(self, takes: list[Taken]) -> None:
        step = self.step
        name = step.name
        full = self.full
        outputs: list[QueuedMessage] = []
        settled: list[tuple[Taken, list[Settlement]]] = []
        for taken in takes:
            failed: list[Settlement] = []
            messages = taken.messages
            bodies = [m.body for m in messages]
            ids = [m.id for m in messages]
            ledgers = [m.ledger for m in messages]
            start = 0
            for batch, (key, count) in enumerate(zip(taken.keys, taken.counts, strict=True)):
                end = start + count
                try:
                    out_key, body = step.reduce(key, bodies[start:end])
                except MemberFailed as exc:
                    failed.append(Settlement(taken.receipt(batch), 0, exc.index, str(exc)))
                    start = end
                    continue
                window = tuple(ids[start:end])
                outputs.append(QueuedMessage(output_id(name, window), out_key, body,
                                             merge_ledgers(ledgers[start:end], full), window))
                start = end
            settled.append((taken, failed))
        self.metrics.windows_closed += len(outputs)
        await self.pass_on(outputs, settled)
