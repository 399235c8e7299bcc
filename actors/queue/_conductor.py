"""The conductor: notices where the input ends, flushes windows, folds the result.

Tiers finish in order. Tier *i*'s input has ended when the producer is done
(tier 0) or tier *i-1* has finished; it has finished when, after that, its
queue is drained on every server (every message acked or dead-lettered)
and, for a reduce tier, every partial window has been closed and its
output enqueued downstream. So every original contributes even when its
key never filled a window. When the last tier has finished and the final
queue is drained, the conductor folds the kept messages into the result.

Windows with a ``window_time`` are also swept while input flows: those
open that long are closed. Closing goes through the same compare-and-set
protocol as the clients (``_windows``), so a sweep racing a client is safe.
Progress is a record, so a restarted conductor carries on where it was.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import msgspec

from actors.queue import _records as records
from actors.queue import _windows as windows
from actors.queue._cluster import Retry
from actors.queue._config import FINAL_QUEUE
from actors.queue._ledger import merge_ledgers
from actors.queue._records import FinalSummary, Progress
from actors.queue._windows import WindowState
from runtime import Actor, ConflictError, Message, ShardlineError
from runtime.store import Put, Versioned

if TYPE_CHECKING:
    from actors.queue._pipeline import QueuePipeline

ShouldClose = Callable[[WindowState], bool]


class Tick(Message, frozen=True):
    """Timer: see whether the next tier has finished."""


class Conductor(Actor[Tick]):
    mailbox_capacity = 4

    def __init__(self, pipeline: QueuePipeline) -> None:
        self.pipeline = pipeline
        name = pipeline.config.name
        self.progress_key = records.progress_key(name)

    async def recover(self) -> None:
        found = await self.runtime.store.get(self.progress_key)
        self.progress = records.decode_progress(found.value) if found else Progress()
        self.version = found.version if found else 0
        self.retry = Retry(attempts=8, backoff=self.pipeline.config.retry_backoff,
                           rng=self.random)
        self.swept: dict[int, float] = {}
        if not self.progress.done:
            self.send_every(self.pipeline.config.drain_poll, Tick())

    async def receive(self, msg: Tick) -> None:
        progress = self.progress
        if progress.done:
            return
        pipeline = self.pipeline
        stage = progress.finished_tiers
        tiers = pipeline.config.tiers
        await self._sweep(stage)
        if stage < len(tiers):
            if stage == 0 and not await self._producer_done():
                return
            depth = await pipeline.cluster.depth(pipeline.input_queue(stage))
            if not depth.drained:
                return
            if tiers[stage].kind == "reduce":
                await self._close_windows(stage, lambda state: True)
            await self._save([], Progress(stage + 1, False))
            self.runtime.trace.record(self.runtime.now(), "tier_finished", self.name,
                                      tiers[stage].name)
            return
        depth = await pipeline.cluster.depth(FINAL_QUEUE)
        if depth.drained:
            summary = await self._fold()
            await self._save([Put(records.result_key(pipeline.config.name),
                                  records.encode(summary))], Progress(stage, True))
            self.runtime.trace.record(self.runtime.now(), "result_folded", self.name,
                                      f"{summary.aggregates} aggregates")

    async def _producer_done(self) -> bool:
        found = await self.runtime.store.get(records.cursor_key(self.pipeline.config.name))
        return found is not None and records.decode_cursor(found.value).done

    async def _save(self, extra: list[Put], progress: Progress) -> None:
        put = Put(self.progress_key, records.encode(progress), self.version)
        result = await self.runtime.store.write([*extra, put])
        self.progress, self.version = progress, result.versions[self.progress_key]

    async def _sweep(self, stage: int) -> None:
        """Close the time windows of unfinished reduce tiers that have been open too long."""
        now = self.runtime.now()
        wall = self.runtime.clock.wall()
        for tier in range(stage, len(self.pipeline.config.tiers)):
            config = self.pipeline.config.tiers[tier]
            limit = config.window_time
            if config.kind != "reduce" or limit is None:
                continue
            if now - self.swept.get(tier, -limit) < limit / 2:
                continue
            self.swept[tier] = now
            await self._close_windows(tier, _older_than(wall, limit))

    async def _close_windows(self, tier: int, should_close: ShouldClose) -> None:
        prefix = windows.window_prefix(self.pipeline.config.name,
                                       self.pipeline.config.tiers[tier].name)
        for record_key, found in await self.runtime.store.scan(prefix):
            await self._close_one(tier, record_key[len(prefix):], found, should_close)

    async def _close_one(self, tier: int, key: str, found: Versioned | None,
                         should_close: ShouldClose) -> None:
        """Close one window by the ``_windows`` protocol; retried on conflicts."""
        pipeline = self.pipeline
        step = pipeline.steps[tier]
        record_key = windows.window_key(pipeline.config.name, step.name, key)
        out_queue = pipeline.output_queue(tier)
        store = self.runtime.store
        for _ in range(16):
            if found is None:
                return
            state = windows.decode(found.value)
            if state.pending:
                await pipeline.cluster.enqueue(out_queue, state.pending, self.retry)
            after: WindowState
            if state.count and should_close(state):
                window = await windows.members(
                    store, windows.window_log(pipeline.config.name, step.name, key), state)
                after = windows.close(windows.without_pending(state), window, key, step,
                                      pipeline.full)
            elif state.pending:
                after = windows.without_pending(state)
            else:
                return
            try:
                result = await store.write([Put(record_key, windows.encode(after), found.version)])
            except ConflictError:
                found = await store.get(record_key)
                continue
            if after.pending:
                pipeline.metrics.windows_closed += len(after.pending)
                await pipeline.cluster.enqueue(out_queue, after.pending, self.retry)
                # on a conflict, whoever moved first saw the pending output and enqueued it
                with contextlib.suppress(ConflictError):
                    await store.write([Put(record_key, windows.encode(
                        windows.without_pending(after)), result.versions[record_key])])
            return
        raise ShardlineError(f"{self.name}: window {record_key!r} kept conflicting")

    async def _fold(self) -> FinalSummary:
        """The final function over the kept messages (in id order), and their ledger."""
        pipeline = self.pipeline
        found = await self.runtime.store.scan(records.final_prefix(pipeline.config.name))
        entries = [records.decode_final_entry(v.value) for _, v in found]
        result = pipeline.final_fn([e.message.body for e in entries])
        try:
            encoded = msgspec.json.encode(result)
        except (TypeError, msgspec.EncodeError) as exc:
            raise ShardlineError(
                f"final function returned {type(result).__name__}, which is not "
                f"JSON-serializable: {exc}") from exc
        ledger = merge_ledgers((e.message.ledger for e in entries), full=False)
        return FinalSummary(encoded, ledger.count, ledger.digest_hex, len(entries))


def _older_than(wall: float, limit: float) -> ShouldClose:
    return lambda state: bool(state.count) and wall - state.opened_at >= limit
