"""The producer: appends the source to the partitions, exactly once.

Each chunk of source items is split by partition and sent to every
partition with ``upto`` (the source index the chunk ends at); a partition
stores ``upto`` in the same transaction as the records. After a restart
the producer resumes from the smallest ``upto`` of all partitions; a
partition further on gets only the items from its own ``upto`` on (the
producer read it when it recovered), and one past the whole chunk drops it,
so nothing is skipped or repeated.

Splitting runs once per source item on the event loop, so it moves the
``(key, payload)`` tuples the source made into per-partition lists as they
are, creating no object per item.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from typing import TYPE_CHECKING

import msgspec

from actors.stream import _keys as keys
from actors.stream._messages import AppendBatch, Produce, ProducerMsg
from actors.stream._records import ProducerPosition
from runtime import Actor, KeyCache

if TYPE_CHECKING:
    from actors.stream._job import StreamJob

_decode_position = msgspec.msgpack.Decoder(ProducerPosition).decode


class Producer(Actor[ProducerMsg]):
    def __init__(self, job: StreamJob) -> None:
        self.job = job
        self.index = 0
        self.chain = -1
        partitions = job.config.partitions
        self.placement: KeyCache[int] = KeyCache(
            lambda key: keys.partition_of(key, partitions))
        """Key -> partition, hashed once per key while the cache holds it."""
        self.items: Iterator[tuple[str, bytes]] = iter(())
        self.positions: list[int] = []

    async def recover(self) -> None:
        config = self.job.config
        positions = []
        for partition in range(config.partitions):
            found = await self.runtime.store.get(keys.producer_key(config.name, partition))
            positions.append(_decode_position(found.value).upto if found else 0)
        self.positions = positions
        """Each partition's stored ``upto``, as far as this producer knows."""
        self.index = min(positions)
        self.items = itertools.islice(self.job.source_items(self.job.seed), self.index, None)
        if not self.job.metrics.producer_done:
            self.chain = self.job.next_chain()
            self.send_after(0.0, Produce(self.chain))

    async def receive(self, msg: ProducerMsg) -> object:
        if msg.chain != self.chain:
            return None
        job = self.job
        config = job.config
        chunk = list(itertools.islice(self.items, config.produce_chunk))
        if not chunk:
            job.metrics.producer_done = True
            self.runtime.trace.record(self.runtime.now(), "producer_done", self.name,
                                      str(self.index))
            return None
        first = self.index
        upto = first + len(chunk)
        per_partition = self._split(chunk, first)
        await asyncio.gather(*(
            part.ask(AppendBatch(max(first, known), upto, entries), timeout=config.ask_timeout)
            for part, known, entries in zip(job.partitions, self.positions, per_partition,
                                            strict=True)
        ))
        self.index = upto
        self.positions = [max(known, upto) for known in self.positions]
        job.metrics.source_position = upto
        delay = len(chunk) / config.rate if config.rate > 0 else 0.0
        self.send_after(delay, Produce(self.chain))
        return None

    def _split(self, chunk: list[tuple[str, bytes]], first: int) -> list[list[tuple[str, bytes]]]:
        """The items of ``chunk`` (source index ``first`` on) per partition, in order;
        a partition gets those at or past its known position only."""
        per_partition: list[list[tuple[str, bytes]]] = [[] for _ in self.positions]
        appends = [entries.append for entries in per_partition]
        place = self.placement.__getitem__
        if max(self.positions) <= first:  # the usual case: every partition takes its share
            for item in chunk:
                appends[place(item[0])](item)
            return per_partition
        for index, item in enumerate(chunk, first):  # resuming: some partitions are ahead
            partition = place(item[0])
            if index >= self.positions[partition]:
                appends[partition](item)
        return per_partition
