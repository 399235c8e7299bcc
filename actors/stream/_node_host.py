"""The stream's half on every cluster node: one worker per node and stream.

Contract:

- Every node spawns a :class:`StreamNodeHost` under :data:`HOST_NAME` when it
  starts (``StreamSystem.start_node``). The driver of a run writes a
  :class:`StreamRecipe` under ``keys.recipe_key(stream)`` and then asks each
  live node ``RunStream(stream)`` every ``rebalance_interval``; the first ask
  a node's host receives starts the stream there (later ones, and asks to a
  node restarted after a kill, are answered from what runs), so a node that
  joins or comes back picks the stream up within one interval.
- On a node, a stream runs under one supervisor: a partition actor per
  partition (idle until this node's worker leases it), the worker
  ``<stream>.worker-<node>`` (the lease owner: the same name after a restart,
  so a restarted node adopts the leases it still holds) and its
  :class:`~actors.stream._balance.Balancer`. Nothing is handed a Python object
  from the driver: the node builds its ``StreamJob`` from the recipe and opens
  the destination from its URL.
- The answer is the node's :class:`NodeStreamReport`: its counters since the
  stream started on this incarnation of the node (``started_at``, the host's
  start on its event loop's clock, tells a restarted node's counters from its
  predecessor's: the runtime clock starts at 0 on every start).
- ``StopStream`` stops the stream on the node and closes its destination.
"""

from __future__ import annotations

import asyncio

import msgspec

from actors.stream import _keys as keys
from actors.stream._balance import Balancer, LeaseTally, spawn_writer
from actors.stream._config import StreamConfig
from actors.stream._destinations import open_destination
from actors.stream._job import StreamJob
from actors.stream._worker import Worker
from runtime import Actor, Message, Runtime, ShardlineError, Supervisor
from runtime._durations import seconds_dec_hook, seconds_enc_hook

HOST_NAME = "stream.node-host"


class StreamRecipe(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a node needs to run a stream's worker: the config, the destination URL
    (``{out}`` expanded) and the seed of the source."""

    config: StreamConfig
    destination: str
    seed: int


encode_recipe = msgspec.msgpack.Encoder(enc_hook=seconds_enc_hook).encode
decode_recipe = msgspec.msgpack.Decoder(StreamRecipe, dec_hook=seconds_dec_hook).decode


class RunStream(Message, frozen=True):
    """Driver -> node host: run ``stream`` here (if not yet) and report."""

    stream: str


class StopStream(Message, frozen=True):
    """Driver -> node host: the run is over; stop ``stream`` here."""

    stream: str


NodeHostMsg = RunStream | StopStream


class NodeStreamReport(msgspec.Struct, frozen=True):
    """One node's counters for one stream since it started there."""

    node: str
    started_at: float
    held: list[int]
    leases_taken: int = 0
    leases_stolen: int = 0
    leases_lost: int = 0
    committed_batches: int = 0
    delivered_records: int = 0
    delivered_batches: int = 0
    redelivered_batches: int = 0
    destination_failures: int = 0
    late_commits_refused: int = 0
    stale_refused: int = 0


class NodeStream:
    """A stream running on this node: its job (built from the recipe) and actors."""

    def __init__(self, job: StreamJob, supervisor: Supervisor, tally: LeaseTally) -> None:
        self.job = job
        self.supervisor = supervisor
        self.tally = tally

    @classmethod
    async def start(cls, rt: Runtime, recipe: StreamRecipe) -> NodeStream:
        """Spawn the stream's actors on ``rt``; on failure nothing of it is left running."""
        node = rt.node_name or "local"
        config = recipe.config
        job = StreamJob(rt, config, seed=recipe.seed,
                        destination=open_destination(recipe.destination,
                                                     threaded=not rt.simulated))
        sup = await rt.spawn_supervisor(f"{config.name}.{node}",
                                        max_restarts=config.max_restarts,
                                        within=config.within, backoff=config.restart_backoff)
        try:
            return cls(job, sup, await cls._spawn(job, sup, node))
        except BaseException:
            await rt.root.stop(sup)
            await job.destination.close()
            raise

    @staticmethod
    async def _spawn(job: StreamJob, sup: Supervisor, node: str) -> LeaseTally:
        """The partition actors, the worker, then its balancer (which tells it Assign)."""
        config = job.config
        for p in range(config.partitions):
            job.partitions.append(
                await spawn_writer(job, sup, p, f"{config.name}.partition-{p}.{node}"))
        worker_name = f"{config.name}.worker-{node}"
        worker = await sup.spawn_retrying(Worker, job, name=worker_name,
                                          backoff=config.restart_backoff,
                                          attempts=config.max_restarts)
        job.workers.append(worker)
        tally = LeaseTally()
        await sup.spawn_retrying(Balancer, job, worker, worker_name, sup, tally,
                                 name=f"{config.name}.balancer-{node}",
                                 backoff=config.restart_backoff, attempts=config.max_restarts)
        return tally

    async def report(self, started_at: float) -> NodeStreamReport:
        job = self.job
        m = job.metrics
        store = job.rt.store
        worker = job.workers[0].name
        held = sorted(keys.partition_from_lease(lease.key)
                      for lease in await store.leases(keys.lease_prefix(job.config.name))
                      if lease.owner == worker)
        return NodeStreamReport(
            node=job.rt.node_name or "", started_at=started_at, held=held,
            leases_taken=self.tally.taken, leases_stolen=self.tally.stolen,
            leases_lost=m.leases_lost, committed_batches=m.committed_batches,
            delivered_records=m.delivered_records, delivered_batches=m.delivered_batches,
            redelivered_batches=m.redelivered_batches,
            destination_failures=m.destination_failures,
            late_commits_refused=m.late_commits_refused, stale_refused=m.stale_refused)

    async def stop(self) -> None:
        await self.job.rt.root.stop(self.supervisor)
        await self.job.destination.close()


class StreamNodeHost(Actor[NodeHostMsg]):
    """Runs, on its node, the streams the driver asks for (see the module contract)."""

    def __init__(self) -> None:
        self.streams: dict[str, NodeStream] = {}
        self.started_at = 0.0

    async def started(self) -> None:
        self.started_at = asyncio.get_running_loop().time()

    async def receive(self, msg: NodeHostMsg) -> NodeStreamReport | None:
        match msg:
            case RunStream(stream=name):
                running = self.streams.get(name)
                if running is None:
                    running = self.streams[name] = await NodeStream.start(
                        self.runtime, await self._recipe(name))
                return await running.report(self.started_at)
            case StopStream(stream=name):
                stopping = self.streams.pop(name, None)
                if stopping is not None:
                    await stopping.stop()
        return None

    async def _recipe(self, stream: str) -> StreamRecipe:
        stored = await self.runtime.store.get(keys.recipe_key(stream))
        if stored is None:
            raise ShardlineError(f"stream {stream!r}: no recipe in the store; the driver "
                                 "writes it before it asks a node to run the stream")
        return decode_recipe(stored.value)

    async def stopped(self) -> None:
        """The streams die with the host (a restarted host starts them afresh when the
        driver asks again; their workers adopt the leases they still hold)."""
        for running in self.streams.values():
            await running.stop()
        self.streams.clear()
