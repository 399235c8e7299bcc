"""The producer: enqueues the originals into the first tier's queue, in source order.

Its cursor (how many originals are durably enqueued) is a record that never
runs ahead of what the servers accepted: the cursor through a chunk is
written after that chunk is accepted, together with the next chunk's
enqueue (one round of commits per chunk, not two: the producer is paced by
its round trips while the tiers keep the loop busy), and the last one on
its own. A restarted producer resumes at the cursor; the chunks it may have
enqueued past it are enqueued again under the same ids, and the servers
drop them as duplicates. Per key, originals are enqueued in source order
because chunks go out one after another.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Iterator

from actors.queue import _records as records
from actors.queue._cluster import Retry, gather_all
from actors.queue._context import PipelineContext
from actors.queue._messages import original_messages
from actors.queue._records import ProducerCursor
from runtime import Actor, Message
from runtime.store import Put


class Produce(Message, frozen=True):
    """Timer: enqueue the next chunk."""


class Producer(Actor[Produce]):
    mailbox_capacity = 16

    def __init__(self, ctx: PipelineContext) -> None:
        self.ctx = ctx
        self.key = records.cursor_key(ctx.config.name)

    async def recover(self) -> None:
        found = await self.runtime.store.get(self.key)
        self.cursor = records.decode_cursor(found.value) if found else ProducerCursor()
        self.version = found.version if found else 0
        self.retry = Retry(attempts=8, backoff=self.ctx.config.retry_backoff,
                           rng=self.random)
        self.items: Iterator[tuple[str, bytes]] = itertools.islice(
            self.ctx.source_items(self.ctx.seed), self.cursor.position, None)
        self.ctx.produced = self.cursor.position
        if not self.cursor.done:
            self.send_after(0.0, Produce())

    async def receive(self, msg: Produce) -> None:
        ctx = self.ctx
        config = ctx.config
        # Columns, not a tuple per original kept alive across the enqueue: every
        # container that outlives a collection of the youngest generation costs one.
        keys: list[str] = []
        bodies: list[bytes] = []
        add_key, add_body = keys.append, bodies.append
        for key, body in itertools.islice(self.items, config.produce_chunk):
            add_key(key)
            add_body(body)
        first = ctx.produced  # accepted so far (the cursor may still be behind)
        messages = original_messages(config.name, first, keys, bodies, ctx.full)
        calls: list[Awaitable[object]] = []
        if messages:
            calls.append(ctx.cluster.enqueue(ctx.input_queue(0), messages, self.retry))
        if self.cursor.position < first:  # the chunk before this one, accepted
            calls.append(self._move_cursor(ProducerCursor(first, False)))
        await gather_all(calls)
        ctx.produced = first + len(keys)
        await self.fault_point("after enqueueing a chunk, before moving the cursor")
        if len(keys) < config.produce_chunk:  # the source ended: the last cursor alone
            await self._move_cursor(ProducerCursor(ctx.produced, True))
            return
        delay = len(keys) / config.rate if config.rate > 0 else 0.0
        self.send_after(delay, Produce())

    async def _move_cursor(self, cursor: ProducerCursor) -> None:
        result = await self.runtime.store.write(
            [Put(self.key, records.encode(cursor), self.version)])
        self.cursor, self.version = cursor, result.versions[self.key]
