"""``QueuePipeline``: tiers of queue clients over a queue cluster (the embedding API).

```python
async with Runtime(store="sqlite:///pipeline.db") as rt:
    pipeline = QueuePipeline(rt, QueueConfig(
        source=GeneratedSource(records=10_000, keys=500),
        tiers=[TierConfig("transform", "map", out_keys=100),
               TierConfig("summarize", "reduce", window=50, out_keys=10),
               TierConfig("aggregate", "reduce", window=20)]))
    await pipeline.start()
    await pipeline.wait_done()
    print(await pipeline.read_result())
```

Under one supervisor named after the pipeline it spawns, in this order,
the queue servers, the tier clients (``<name>.<tier>-<j>``), the final
step's client (``<name>.final``), the conductor and the producer. Each
tier's input queue is named after the tier; the last tier writes to the
queue ``final``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TypeVar

from actors.queue import _records as records
from actors.queue._builtins import final_sums
from actors.queue._cluster import QueueCluster
from actors.queue._conductor import Conductor
from actors.queue._config import FINAL_QUEUE, QueueConfig
from actors.queue._context import FinalFn, PipelineContext, SourceFn
from actors.queue._final import FinalClient
from actors.queue._functions import TierStep
from actors.queue._messages import Receipt, WindowPolicy
from actors.queue._metrics import QueueMetrics
from actors.queue._producer import Producer
from actors.queue._records import FinalSummary, ProducerCursor, Progress
from actors.queue._source import SourceItems, source_items
from actors.queue._tiers import MapClient, ReduceClient
from runtime import Actor, ActorRef, Message, Runtime, Supervisor
from runtime._callables import resolve_callable
from runtime.scenario import Audit
from runtime.store import without_faults

M = TypeVar("M", bound=Message)


def queue_cluster(rt: Runtime, config: QueueConfig, metrics: QueueMetrics | None = None,
                  audit: Audit | None = None,
                  cluster_type: type[QueueCluster] = QueueCluster) -> QueueCluster:
    """The pipeline's ``QueueCluster`` (its servers' settings follow from ``config``)."""
    return cluster_type(
        rt, name=config.name, servers=config.servers,
        visibility_timeout=config.visibility_timeout, max_receives=config.max_receives,
        dedup_window=config.dedup_window, ask_timeout=config.ask_timeout,
        windows={t.name: WindowPolicy(t.window, t.window_time)
                 for t in config.tiers if t.kind == "reduce"},
        metrics=metrics, checkpoint_every=config.checkpoint_every, audit=audit)


class QueuePipeline:
    """A multi-tier pipeline; see the module docstring.

    ``source``, ``functions`` (tier name -> function) and ``final`` override
    the configuration's function names with Python callables. ``audit``: where
    the servers hand journal entries before compacting them away, so
    ``read_history`` (the checks) still sees every one. ``cluster_type``: how the
    servers are reached (``actors.queue._nodes.NodeServers`` across nodes).
    """

    def __init__(
        self,
        rt: Runtime,
        config: QueueConfig,
        *,
        seed: int = 0,
        source: SourceItems | None = None,
        functions: dict[str, Callable[..., object]] | None = None,
        final: FinalFn | None = None,
        audit: Audit | None = None,
        cluster_type: type[QueueCluster] = QueueCluster,
    ) -> None:
        problems = config.problems()
        if problems:
            field, message = problems[0]
            raise ValueError(f"queue config: {field}: {message}")
        self.rt = rt
        metrics = QueueMetrics()
        cluster = queue_cluster(rt, config, metrics, audit, cluster_type)
        if source is None:
            if config.source is None:
                raise ValueError("QueuePipeline needs a source: QueueConfig.source or source=")
            source = source_items(config.source)
        functions = functions or {}
        unknown = set(functions) - {t.name for t in config.tiers}
        if unknown:
            raise ValueError(f"functions given for unknown tiers: {sorted(unknown)}")
        poison = config.poison
        poisoned = (poison.tier or config.tiers[0].name) if poison is not None else None
        steps = [TierStep(t, functions.get(t.name), poison if t.name == poisoned else None)
                 for t in config.tiers]
        if final is None and config.final is not None:
            final = resolve_callable(config.final, what="queue final function")
        self.context = PipelineContext(config, cluster, metrics, steps, final or final_sums,
                                       source, seed)
        """What the pipeline's actors are built from (with their tier index)."""
        self.supervisor: Supervisor | None = None
        self.resumed = False
        self.audit = audit

    # -- what the context holds, for the checks and the report ---------------------------

    @property
    def config(self) -> QueueConfig:
        return self.context.config

    @property
    def cluster(self) -> QueueCluster:
        return self.context.cluster

    @property
    def metrics(self) -> QueueMetrics:
        return self.context.metrics

    @property
    def steps(self) -> list[TierStep]:
        return self.context.steps

    @property
    def final_fn(self) -> FinalFn:
        return self.context.final_fn

    @property
    def source_items(self) -> SourceFn:
        return self.context.source_items

    @property
    def seed(self) -> int:
        return self.context.seed

    @property
    def full(self) -> bool:
        return self.context.full

    @property
    def metrics_produced(self) -> int:
        """Originals durably enqueued so far."""
        return self.context.produced

    @property
    def late_acks(self) -> list[tuple[str, Receipt]]:
        return self.context.late_acks

    def input_queue(self, tier: int) -> str:
        return self.context.input_queue(tier)

    def output_queue(self, tier: int) -> str:
        return self.context.output_queue(tier)

    @property
    def queues(self) -> list[str]:
        return [*(t.name for t in self.config.tiers), FINAL_QUEUE]

    # -- lifecycle -----------------------------------------------------------------

    async def start(self, *, clients: bool = True, driver: bool = True) -> None:
        """Spawn the pipeline's actors. Across nodes each node starts only the
        ``clients`` (the tiers' and the final step's) and the run's own runtime only
        the ``driver`` part: the servers (or, as entities, their layout check), the
        conductor and the producer."""
        config = self.config
        ctx = self.context
        if driver:
            self.resumed = (await self.cursor()).position > 0
        sup = await self.rt.spawn_supervisor(
            config.name, max_restarts=config.max_restarts, within=config.within,
            backoff=config.restart_backoff)
        self.supervisor = sup
        if driver:
            await self.cluster.start(sup)
        if clients:
            for i, tier in enumerate(config.tiers):
                cls = MapClient if tier.kind == "map" else ReduceClient
                for j in range(tier.clients):
                    await self._spawn(sup, cls, ctx, i, name=f"{config.name}.{tier.name}-{j}")
            await self._spawn(sup, FinalClient, ctx, name=f"{config.name}.final")
        if driver:
            await self._spawn(sup, Conductor, ctx, name=f"{config.name}.conductor")
            await self._spawn(sup, Producer, ctx, name=f"{config.name}.producer")

    async def _spawn(self, sup: Supervisor, cls: type[Actor[M]], *args: object,
                     name: str) -> ActorRef[M]:
        config = self.config
        return await sup.spawn_retrying(cls, *args, name=name,
                                        backoff=config.restart_backoff,
                                        attempts=config.max_restarts)

    async def stop(self) -> None:
        """Stop every actor of the pipeline; the store keeps its state (start again to resume)."""
        if self.supervisor is not None:
            await self.rt.root.stop(self.supervisor)
            self.supervisor = None

    # -- progress ----------------------------------------------------------------------

    async def cursor(self) -> ProducerCursor:
        found = await without_faults(self.rt.store).get(records.cursor_key(self.config.name))
        return records.decode_cursor(found.value) if found else ProducerCursor()

    async def progress(self) -> Progress:
        found = await without_faults(self.rt.store).get(records.progress_key(self.config.name))
        return records.decode_progress(found.value) if found else Progress()

    async def done(self) -> bool:
        """Every tier finished and the result is folded (durably)."""
        return (await self.progress()).done

    async def wait_done(self, deadline: float | None = None, poll: float = 0.05) -> bool:
        return await self.rt.wait_until(self.done, deadline=deadline, poll=poll)

    async def read_summary(self) -> FinalSummary | None:
        """Read the folded result and its ledger from the store (a coroutine: it does
        I/O), or None before the result is folded."""
        found = await without_faults(self.rt.store).get(records.result_key(self.config.name))
        return records.decode_summary(found.value) if found else None

    async def read_result(self) -> object:
        """Read the final function's result (decoded from JSON) from the store (a
        coroutine: it does I/O), or None before it is folded."""
        summary = await self.read_summary()
        return None if summary is None else json.loads(summary.result)
