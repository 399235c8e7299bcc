"""The polling loop every queue client shares (tier clients and the final step).

A client handles one ``Poll`` at a time: take batches (up to
``KEY_BATCH`` consecutive messages of a key, or a whole window, from
distinct keys of every server at once, ``receive_batch`` messages per
server, in columns: one ``Taken`` per server, no object per batch), handle
them, settle each ``Taken`` in one request (whole, but for the batches a
failure names), and poll again at once if it got anything, else after
``idle_poll``, doubled after each further empty receive up to
``IDLE_STEPS`` times that (an idle tier costs the servers little). Fault
points sit between the steps of a handling, so an injected crash or pause
can land after a receive, after processing, or between enqueueing outputs
and acking inputs. Server calls that fail transiently are retried with
backoff; a client that still cannot proceed crashes, and when it restarts
the batches it held come back at once (failing that, after their
visibility timeout).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from actors.queue._cluster import TRANSIENT, Retry
from actors.queue._context import PipelineContext
from actors.queue._messages import Settlement, Taken
from runtime import Actor, ConflictError, Message, StoreError

T = TypeVar("T")
KEY_BATCH = 100
"""Messages of one key a map tier or the final step takes in one batch."""
IDLE_STEPS = 4
"""An idle client polls at most this many ``idle_poll`` apart."""


class Poll(Message, frozen=True):
    """Timer: take the next batch."""


class QueueConsumer(Actor[Poll]):
    """Base of the clients: subclasses implement ``handle``."""

    mailbox_capacity = 16

    def __init__(self, ctx: PipelineContext, queue: str) -> None:
        self.ctx = ctx
        self.cluster = ctx.cluster
        self.metrics = ctx.metrics
        self.queue = queue
        config = ctx.config
        self.batch = config.receive_batch
        self.idle_poll = config.idle_poll
        self.idle: float = self.idle_poll

    async def started(self) -> None:
        config = self.ctx.config
        self.retry = Retry(attempts=8, backoff=config.retry_backoff, rng=self.random,
                           on_retry=self._on_retry)
        try:
            # what a crashed run of this client held comes back now, not at its timeout
            await self.cluster.holder_restarted(self.ctx.holder(self.name), self.retry)
        except TRANSIENT as exc:
            self.log.warning("queue.release_on_restart_failed", error=str(exc))
        self.send_after(0.0, Poll())

    def _on_retry(self, what: str, exc: BaseException) -> None:
        self.metrics.request_retries += 1
        self.log.warning("queue.retry", call=what, error=f"{type(exc).__name__}: {exc}")

    async def store_call(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """A store call, retried with backoff on ``StoreError`` (never on a conflict:
        a compare-and-set that lost must be recomputed, not repeated)."""
        attempt = 0
        while True:
            try:
                return await call()
            except ConflictError:
                raise
            except StoreError as exc:
                if attempt >= self.retry.attempts:
                    raise
                self._on_retry(what, exc)
                await asyncio.sleep(self.retry.backoff.delay(attempt, self.random.random()))
                attempt += 1

    def _on_receive_error(self, server: int, exc: BaseException) -> None:
        self.metrics.request_retries += 1
        self.log.warning("queue.receive_failed", server=server,
                         error=f"{type(exc).__name__}: {exc}")

    async def receive(self, msg: Poll) -> None:
        takes = await self.cluster.take(self.queue, self.batch, KEY_BATCH,
                                        on_error=self._on_receive_error,
                                        holder=self.ctx.holder(self.name))
        if takes:
            await self.fault_point(f"after receiving {sum(len(t.keys) for t in takes)} batches")
            await self.handle(takes)
        if takes:
            self.idle = self.idle_poll
            self.send_after(0.0, Poll())
        else:
            self.send_after(self.idle, Poll())
            self.idle = min(2 * self.idle, IDLE_STEPS * self.idle_poll)

    async def handle(self, takes: list[Taken]) -> None:
        """Handle what one receive took (one ``Taken`` per server)."""
        raise NotImplementedError

    async def settle(self, settled: list[tuple[Taken, list[Settlement]]]) -> None:
        """Settle taken batches whose outputs are durable: each ``Taken`` whole, except
        the batches its settlements name; refused (late) ones are counted."""
        if not settled:
            return
        for _, others in settled:
            for s in others:
                if s.failed >= 0:
                    self.metrics.processing_errors += 1
                    self.log.warning("queue.processing_failed", key=s.receipt.key,
                                     member=s.failed, error=s.reason)
        result = await self.cluster.settle_taken(settled, self.retry)
        rt = self.runtime
        for receipt in result.refused:
            # too late (or stale): its outputs were duplicates the queue dropped
            self.ctx.late_acks.append((self.name, receipt))
            rt.trace.record(rt.now(), "late_ack_refused", self.name,
                            f"{receipt.queue}/{receipt.key}@{receipt.offset}#{receipt.attempt}")
