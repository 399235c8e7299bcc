"""The producer: enqueues the originals into the first tier's queue, in source order.

Its cursor (how many originals are durably enqueued) is a record written
after each chunk is accepted. A restarted producer resumes at the cursor;
the chunk it may have enqueued before crashing is enqueued again under the
same ids, and the servers drop it as duplicates. Per key, originals are
enqueued in source order because chunks go out one after another.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from actors.queue import _records as records
from actors.queue._cluster import Retry
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
        messages = original_messages(config.name, self.cursor.position, keys, bodies,
                                     ctx.full)
        if messages:
            await ctx.cluster.enqueue(ctx.input_queue(0), messages, self.retry)
        await self.fault_point("after enqueueing a chunk, before moving the cursor")
        cursor = ProducerCursor(self.cursor.position + len(keys),
                                len(keys) < config.produce_chunk)
        result = await self.runtime.store.write(
            [Put(self.key, records.encode(cursor), self.version)])
        self.cursor, self.version = cursor, result.versions[self.key]
        ctx.produced = cursor.position
        if not cursor.done:
            delay = len(keys) / config.rate if config.rate > 0 else 0.0
            self.send_after(delay, Produce())
