"""The final step's client: keeps every message of the last tier, once.

Each message is written as a record named by its id (writing it again
changes nothing) before it is acked; when the last tier has finished, the
conductor folds the records into the final result.
"""

from __future__ import annotations

from actors.queue import _records as records
from actors.queue._config import FINAL_QUEUE
from actors.queue._consumer import QueueConsumer
from actors.queue._context import PipelineContext
from actors.queue._messages import Taken
from actors.queue._records import FinalEntry
from runtime.store import Put


class FinalClient(QueueConsumer):
    def __init__(self, ctx: PipelineContext) -> None:
        super().__init__(ctx, FINAL_QUEUE)
        self.prefix = records.final_prefix(ctx.config.name)

    async def handle(self, takes: list[Taken]) -> None:
        prefix = self.prefix
        ops = [Put(prefix + m.id, records.encode(FinalEntry(t.server, offset, m)))
               for t in takes for m, offset in zip(t.messages, t.message_offsets, strict=True)]
        await self.store_call("final write", lambda: self.runtime.store.write(ops))
        await self.fault_point("after keeping final messages, before acking them")
        await self.settle([(t, []) for t in takes])
