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

from actors.queue._consumer import QueueConsumer
from actors.queue._context import PipelineContext
from actors.queue._functions import MemberFailed, TierStep
from actors.queue._ledger import merge_ledgers, output_id, output_id_of_one
from actors.queue._messages import Batch, QueuedMessage, Settlement


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

    async def pass_on(self, outputs: list[QueuedMessage], settlements: list[Settlement]) -> None:
        """Enqueue the outputs, then settle the inputs they came from."""
        await self.spend()
        await self.fault_point("after processing, before enqueueing outputs")
        if outputs:
            result = await self.cluster.enqueue(self.out_queue, outputs, self.retry)
            self.metrics.outputs_enqueued += result.accepted
        await self.fault_point("after enqueueing outputs, before acking inputs")
        await self.settle(settlements)


class MapClient(TierClient):
    """One output per input; a batch is mapped in order up to its first failure."""

    async def handle(self, batches: list[Batch]) -> None:
        step_map = self.step.map
        output_of = output_id_of_one(self.step.name)
        outputs: list[QueuedMessage] = []
        add = outputs.append
        settlements: list[Settlement] = []
        for batch in batches:
            done = 0
            failure: BaseException | None = None
            for m in batch.messages:
                ident = m.id
                try:
                    key, body = step_map(m.key, m.body)
                except Exception as exc:
                    failure = exc
                    break
                add(QueuedMessage(output_of(ident), key, body, m.ledger, (ident,)))
                done += 1
            settlements.append(Settlement(batch.receipt, done) if failure is None else
                               Settlement(batch.receipt, done, done, reason_of(failure)))
        await self.pass_on(outputs, settlements)


class ReduceClient(TierClient):
    """One output per window (a whole batch), or the failing member named."""

    async def handle(self, batches: list[Batch]) -> None:
        step = self.step
        name = step.name
        full = self.full
        outputs: list[QueuedMessage] = []
        settlements: list[Settlement] = []
        for batch in batches:
            members = batch.messages
            key = batch.receipt.key
            try:
                out_key, body = step.reduce(key, [m.body for m in members])
            except MemberFailed as exc:
                settlements.append(Settlement(batch.receipt, 0, exc.index, str(exc)))
                continue
            ids = tuple(m.id for m in members)
            outputs.append(QueuedMessage(output_id(name, ids), out_key, body,
                                         merge_ledgers((m.ledger for m in members), full), ids))
            settlements.append(Settlement(batch.receipt, len(members)))
        self.metrics.windows_closed += len(outputs)
        await self.pass_on(outputs, settlements)
