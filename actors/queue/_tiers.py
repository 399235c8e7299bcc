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
from actors.queue._ledger import merge_ledgers, output_id, output_id_of_one
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
        step_map = self.step.map
        output_of = output_id_of_one(self.step.name)
        outputs: list[QueuedMessage] = []
        add = outputs.append
        settled: list[tuple[Taken, list[Settlement]]] = []
        for taken in takes:
            failed: list[Settlement] = []
            skip_to = 0
            for j, m in enumerate(taken.messages):
                if j < skip_to:
                    continue  # the rest of a batch after its failure: given back
                ident = m.id
                try:
                    key, body = step_map(m.key, m.body)
                except Exception as exc:
                    # only now find the batch: which one a message is in costs nothing
                    # per message while none fails
                    starts = taken.starts()
                    batch = bisect.bisect_right(starts, j) - 1
                    done = j - starts[batch]
                    failed.append(Settlement(taken.receipt(batch), done, done, reason_of(exc)))
                    skip_to = starts[batch] + taken.counts[batch]
                    continue
                add(QueuedMessage(output_of(ident), key, body, m.ledger, (ident,)))
            settled.append((taken, failed))
        await self.pass_on(outputs, settled)


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
            start = 0
            for batch, (key, count) in enumerate(zip(taken.keys, taken.counts, strict=True)):
                members = messages[start:start + count]
                start += count
                try:
                    out_key, body = step.reduce(key, [m.body for m in members])
                except MemberFailed as exc:
                    failed.append(Settlement(taken.receipt(batch), 0, exc.index, str(exc)))
                    continue
                ids = tuple([m.id for m in members])
                outputs.append(QueuedMessage(
                    output_id(name, ids), out_key, body,
                    merge_ledgers((m.ledger for m in members), full), ids))
            settled.append((taken, failed))
        self.metrics.windows_closed += len(outputs)
        await self.pass_on(outputs, settled)
