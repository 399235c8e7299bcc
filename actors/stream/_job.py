"""``StreamJob``: a stream topology on a runtime (the embedding API).

```python
async with Runtime(store="sqlite:///state.db") as rt:
    job = StreamJob(rt, StreamConfig(source=GeneratedSource(records=10_000)),
                    destination=open_destination("dir://sink", threaded=True))
    await job.start()
    await job.wait_done()
```

The job spawns, under one supervisor named after the stream, the
partitions, the workers, the coordinator and the producer, in that order
(each depends only on those before it).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import TypeVar

import msgspec

from actors.stream import _keys as keys
from actors.stream._buffer import RecentChunks
from actors.stream._config import StreamConfig
from actors.stream._coordinator import Coordinator
from actors.stream._destinations import Destination
from actors.stream._messages import PartitionMsg, WorkerMsg
from actors.stream._metrics import StreamMetrics
from actors.stream._partition import Partition
from actors.stream._producer import Producer
from actors.stream._records import Checkpoint, Record
from actors.stream._source import SourceItems, source_items
from runtime import (
    Actor,
    ActorRef,
    Message,
    Runtime,
    Supervisor,
)
from runtime._callables import resolve_callable
from runtime.scenario import Audit
from runtime.store import without_faults

ProcessFn = Callable[[Record], object]
M = TypeVar("M", bound=Message)
_decode_checkpoint = msgspec.msgpack.Decoder(Checkpoint).decode


class StreamJob:
    """A stream job on ``rt``: its source appended to partition logs, processed and
    delivered to ``destination`` exactly once, across crashes and lease takeovers.

    ``process(record)`` (or the config's ``process``) maps each record (``None``
    drops it); it must be deterministic, since a replayed batch must equal its
    first delivery. ``destination.deliver`` must be idempotent by batch id.
    ``source(seed)`` replaces the config's source. Lifecycle: ``await start()``,
    ``await wait_done()``, then ``await close()`` (or ``await stop()`` to keep
    the destination open). Progress is durable in the runtime's store: a new
    job on the same store and config resumes where the last one stopped.
    ``audit`` keeps what retention truncates, for ``check_stream``
    (``runtime.scenario.Audit``). ``workers_on_nodes``: this runtime is the
    driver of a run across cluster nodes and spawns no workers and no
    coordinator; the nodes' workers balance the partition leases among
    themselves (``actors.stream._node_driver``).
    """

    def __init__(
        self,
        rt: Runtime,
        config: StreamConfig,
        *,
        destination: Destination,
        seed: int = 0,
        process: ProcessFn | None = None,
        source: SourceItems | None = None,
        audit: Audit | None = None,
        workers_on_nodes: bool = False,
    ) -> None:
        self.rt = rt
        self.audit = audit
        self.config = config
        self.destination = destination
        self.seed = seed
        self.metrics = StreamMetrics()
        self.source_items: Callable[[int], Iterator[tuple[str, bytes]]] = (
            source or source_items(config.source))
        if process is None and config.process is not None:
            process = resolve_callable(config.process, what="stream process")
        self._process = process
        self.partitions: list[ActorRef[PartitionMsg]] = []
        self.workers: list[ActorRef[WorkerMsg]] = []
        self.supervisor: Supervisor | None = None
        self._chains = itertools.count(1)
        self.start_seqs: list[int] = []
        self.resumed = False
        self.recent_chunks = RecentChunks()
        """Chunks appended in this process, for the workers reading them next."""
        self.workers_on_nodes = workers_on_nodes

    def next_chain(self) -> int:
        return next(self._chains)

    @property
    def processes(self) -> bool:
        """A process function is set (else records reach the destination as read)."""
        return self._process is not None

    def process_records(self, records: list[Record]) -> list[Record]:
        """Apply the user's function; ``None`` filters a record out.

        The function may return bytes (a new payload), a ``(key, payload)``
        pair, a ``Record``, or the record unchanged.
        """
        fn = self._process
        if fn is None:
            return records
        out: list[Record] = []
        for record in records:
            result = fn(record)
            if result is None:
                continue
            if isinstance(result, Record):
                out.append(result)
            elif isinstance(result, bytes):
                out.append(Record(record.seq, record.key, result))
            elif isinstance(result, tuple) and len(result) == 2:
                out.append(Record(record.seq, str(result[0]), bytes(result[1])))
            else:
                raise TypeError(f"process function returned {type(result).__name__}; expected "
                                "None, bytes, (key, payload) or Record")
        return out

    async def start(self) -> None:
        """Coroutine: spawn the job's actors (partitions, workers, coordinator, producer;
        the partitions and the producer only with ``workers_on_nodes``)."""
        config = self.config
        from actors.stream._worker import Worker

        found = await self.checkpoints()
        self.start_seqs = [c.next_seq for c, _ in found]
        self.resumed = any(hw > 0 for _, hw in found)
        sup = await self.rt.spawn_supervisor(
            config.name, max_restarts=config.max_restarts, within=config.within,
            backoff=config.restart_backoff)
        self.supervisor = sup
        for p in range(config.partitions):
            self.partitions.append(
                await self._spawn(sup, Partition, p, name=f"{config.name}.partition-{p}"))
        if not self.workers_on_nodes:
            for w in range(config.workers):
                self.workers.append(
                    await self._spawn(sup, Worker, name=f"{config.name}.worker-{w}"))
            await self._spawn(sup, Coordinator, name=f"{config.name}.coordinator")
        await self._spawn(sup, Producer, name=f"{config.name}.producer")

    async def _spawn(self, sup: Supervisor, cls: type[Actor[M]], *args: object,
                     name: str) -> ActorRef[M]:
        config = self.config
        return await sup.spawn_retrying(cls, self, *args, name=name,
                                        backoff=config.restart_backoff,
                                        attempts=config.max_restarts)

    async def checkpoints(self) -> list[tuple[Checkpoint, int]]:
        """Each partition's (checkpoint, chunk high water), read from the store."""
        store = without_faults(self.rt.store)
        found = []
        for p in range(self.config.partitions):
            raw = await store.get(keys.checkpoint_key(self.config.name, p))
            checkpoint = _decode_checkpoint(raw.value) if raw else Checkpoint()
            found.append((checkpoint, await store.high_water(keys.log_name(self.config.name, p))))
        return found

    async def done(self) -> bool:
        """Coroutine: the source is exhausted and every partition is committed through
        its high water (read from the store; cheap while records this run appended are
        still uncommitted)."""
        metrics = self.metrics
        if not metrics.producer_done or metrics.committed_records < metrics.produced:
            return False
        return all(c.pending is None and c.next_chunk >= hw for c, hw in await self.checkpoints())

    async def wait_done(self, deadline: float | None = None, poll: float = 0.05) -> bool:
        """Coroutine: wait until ``done()`` (True) or ``deadline`` (runtime time) passed."""
        return await self.rt.wait_until(self.done, deadline=deadline, poll=poll)

    async def stop(self) -> None:
        """Coroutine (``await job.stop()``): stop the actors; the destination stays open
        (``await job.close()`` when done reading it)."""
        if self.supervisor is not None:
            await self.rt.root.stop(self.supervisor)
            self.supervisor = None

    async def close(self) -> None:
        """Coroutine (``await job.close()``): stop the actors, then close the destination."""
        await self.stop()
        await self.destination.close()
