"""The conductor: notices where the input ends, seals queues, folds the result.

Tiers finish in order. Tier *i*'s input has ended when the producer is done
(tier 0) or tier *i-1* has finished; then the conductor seals a reduce
tier's queue (its servers hand out partial windows from then on), and the
tier has finished when its queue is drained on every server (every message
acked or dead-lettered, so every partial window's output is enqueued
downstream). So every original contributes even when its key never filled
a window. When the last tier has finished and the final queue is drained,
the conductor folds the kept messages into the result. Windows with a
``window_time`` need nothing from the conductor: their servers hand them
out once their oldest member has waited that long. Progress is a record,
so a restarted conductor carries on where it was (sealing is idempotent).
"""

from __future__ import annotations

import msgspec

from actors.queue import _records as records
from actors.queue._builtins import final_sums_keyed, is_builtin
from actors.queue._cluster import Retry
from actors.queue._config import FINAL_QUEUE
from actors.queue._context import PipelineContext
from actors.queue._ledger import merge_ledgers
from actors.queue._records import FinalSummary, Progress
from runtime import Actor, Message, ShardlineError
from runtime.store import Put


class Tick(Message, frozen=True):
    """Timer: see whether the next tier has finished."""


class Conductor(Actor[Tick]):
    mailbox_capacity = 4

    def __init__(self, ctx: PipelineContext) -> None:
        self.ctx = ctx
        name = ctx.config.name
        self.progress_key = records.progress_key(name)

    async def recover(self) -> None:
        found = await self.runtime.store.get(self.progress_key)
        self.progress = records.decode_progress(found.value) if found else Progress()
        self.version = found.version if found else 0
        self.retry = Retry(attempts=8, backoff=self.ctx.config.retry_backoff,
                           rng=self.random)
        self.sealed: set[int] = set()
        if not self.progress.done:
            self.send_every(self.ctx.config.drain_poll, Tick())

    async def receive(self, msg: Tick) -> None:
        progress = self.progress
        if progress.done:
            return
        ctx = self.ctx
        stage = progress.finished_tiers
        tiers = ctx.config.tiers
        if stage < len(tiers):
            if stage == 0 and not await self._producer_done():
                return
            if tiers[stage].kind == "reduce" and stage not in self.sealed:
                await ctx.cluster.seal(ctx.input_queue(stage), self.retry)
                self.sealed.add(stage)
            depth = await ctx.cluster.depth(ctx.input_queue(stage))
            if not depth.drained:
                return
            await self._save([], Progress(stage + 1, False))
            self.runtime.trace.record(self.runtime.now(), "tier_finished", self.name,
                                      tiers[stage].name)
            return
        depth = await ctx.cluster.depth(FINAL_QUEUE)
        if depth.drained:
            summary = await self._fold()
            await self._save([Put(records.result_key(ctx.config.name),
                                  records.encode(summary))], Progress(stage, True))
            self.runtime.trace.record(self.runtime.now(), "result_folded", self.name,
                                      f"{summary.aggregates} aggregates")

    async def _producer_done(self) -> bool:
        found = await self.runtime.store.get(records.cursor_key(self.ctx.config.name))
        return found is not None and records.decode_cursor(found.value).done

    async def _save(self, extra: list[Put], progress: Progress) -> None:
        put = Put(self.progress_key, records.encode(progress), self.version)
        result = await self.runtime.store.write([*extra, put])
        self.progress, self.version = progress, result.versions[self.progress_key]

    async def _fold(self) -> FinalSummary:
        """The final function over the kept messages (in id order), and their ledger."""
        ctx = self.ctx
        found = await self.runtime.store.scan(records.final_prefix(ctx.config.name))
        entries = [records.decode_final_entry(v.value) for _, v in found]
        final_fn = ctx.final_fn
        result = (final_sums_keyed([(e.message.key, e.message.body) for e in entries])
                  if is_builtin(final_fn) else final_fn([e.message.body for e in entries]))
        try:
            encoded = msgspec.json.encode(result)
        except (TypeError, msgspec.EncodeError) as exc:
            raise ShardlineError(
                f"final function returned {type(result).__name__}, which is not "
                f"JSON-serializable: {exc}") from exc
        ledger = merge_ledgers((e.message.ledger for e in entries), full=False)
        return FinalSummary(encoded, ledger.count, ledger.digest_hex, len(entries))
