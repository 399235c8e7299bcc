"""``Runtime``: the root supervisor, the name registry, the trace, and shutdown.

``async with Runtime() as rt:`` starts a root supervisor; leaving the block
stops every actor children-first (each may finish its current message within
its shutdown timeout, then it is cancelled) and leaves no task behind. If an
escalation reaches the root, the runtime has *failed*: its actors are
stopped and the failure is raised when the block exits (and ``rt.failure``
holds it), as an OTP application stops when its top supervisor gives up.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from runtime._actor import Actor, Timer
from runtime._cell import _ActorCell
from runtime._clock import Clock
from runtime._errors import NameTaken, ShardlineError
from runtime._faults import Fault, FaultInjector
from runtime._message import Message
from runtime._ref import ActorRef, _LocalRef
from runtime._simloop import SimulatedEventLoop
from runtime._stats import ActorStatistics
from runtime._supervisor import (
    Backoff,
    Restart,
    Strategy,
    Supervisor,
    SupervisorSpec,
    _SupervisorNode,
)
from runtime._trace import Trace, TraceLevel

if TYPE_CHECKING:
    from runtime.cluster import Cluster, ClusterStatistics
    from runtime.cluster._node import ClusterNode
    from runtime.store import Store

M = TypeVar("M", bound=Message)
_log = structlog.get_logger("shardline")


class NoSuchActor(ShardlineError, LookupError):
    """No live actor is registered under that name."""


class Runtime:
    """An actor system. Use as ``async with Runtime(...) as rt``.

    ``seed`` feeds ``rt.random`` (default: the simulated loop's seed, else 0).
    ``trace`` is ``"full"`` (every delivery is a trace event; the default
    under simulation) or ``"lifecycle"`` (the default on the real clock,
    where per-message hashing would cost throughput). ``store`` is a store
    URL (``memory://``, ``sqlite:///path.db``, ``postgresql://user@host/db``) or an
    open ``Store``. ``cluster`` makes this runtime a node of a cluster sharing
    that store (see ``runtime.cluster``): entities, remote refs, membership.
    """

    def __init__(
        self,
        *,
        store: str | Store | None = None,
        seed: int | None = None,
        trace: TraceLevel | str | None = None,
        faults: Sequence[Fault] = (),
        strategy: Strategy | str = Strategy.ONE_FOR_ONE,
        max_restarts: int = 3,
        within: float = 5.0,
        backoff: Backoff | None = None,
        shutdown_timeout: float = 5.0,
        name: str = "root",
        cluster: Cluster | None = None,
    ) -> None:
        self._store_arg = store
        self._seed_arg = seed
        self._trace_arg = trace
        self._fault_plan = list(faults)
        self._root_spec = SupervisorSpec(Strategy(strategy), max_restarts, within,
                                         backoff or Backoff())
        self.shutdown_timeout = shutdown_timeout
        self.name = name
        self._registry: dict[str, _ActorCell] = {}
        self._supervisors: dict[str, _SupervisorNode] = {}
        self._auto_names: dict[str, int] = {}
        self._timers: dict[Timer, None] = {}
        self._owned_store: Store | None = None
        self._store: Store | None = None
        self._epoch = 0.0
        self.failure: BaseException | None = None
        self.dead_letters = 0
        self._entered = False
        self._cluster_arg = cluster
        self._cluster: ClusterNode | None = None

    # -- context -------------------------------------------------------------
    async def __aenter__(self) -> Runtime:
        loop = asyncio.get_running_loop()
        simulated = isinstance(loop, SimulatedEventLoop)
        self.simulated = simulated
        if self._seed_arg is not None:
            self.seed = self._seed_arg
        else:
            self.seed = loop.seed if isinstance(loop, SimulatedEventLoop) else 0
        self.random = random.Random(self.seed)
        self.clock = Clock(loop, simulated)
        self._epoch = loop.time()
        level = TraceLevel(self._trace_arg) if self._trace_arg else (
            TraceLevel.FULL if simulated else TraceLevel.LIFECYCLE)
        self.trace = Trace(level)
        self.faults = FaultInjector(self, random.Random(f"shardline-faults:{self.seed}"))
        self._failed = asyncio.Event()
        self.faults.register_kind("store_error")
        if self._store_arg is not None:
            from runtime.store import FaultyStore, open_store

            inner = self._store_arg
            if isinstance(inner, str):
                inner = await open_store(inner, clock=self.clock.wall)
                self._owned_store = inner
            self._store = FaultyStore(inner, self.faults)
        self._root = _SupervisorNode(self, self.name, self._root_spec, None, Restart.PERMANENT)
        self._supervisors[self.name] = self._root
        self._entered = True
        self._lifecycle("runtime_started", self.name, f"seed {self.seed}")
        if self._cluster_arg is not None:
            await self._join(self._cluster_arg)
        if self._fault_plan:
            self.faults.install(self._fault_plan)
        return self

    async def _join(self, cluster: Cluster) -> None:
        """Become a node: its fault kinds exist before the plan is installed."""
        from runtime.cluster._errors import ClusterError
        from runtime.cluster._node import ClusterNode

        if self._store is None:
            await self.shutdown()
            raise ClusterError("a cluster node needs the shared store: "
                               "Runtime(store=URL, cluster=Cluster(...))")
        self._cluster = ClusterNode(self, cluster, self._store)
        try:
            await self._cluster.start()
        except BaseException:
            await self.shutdown()
            raise

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()
        if exc is None and self.failure is not None:
            raise self.failure

    async def shutdown(self) -> None:
        """Stop everything, children first; idempotent."""
        if not self._entered:
            return
        self._entered = False
        if self._cluster is not None:
            await self._cluster.leave()
        self.faults.cancel()
        for timer in list(self._timers):
            timer.cancel()
        await self._root.shutdown()
        if self._owned_store is not None:
            await self._owned_store.close()
            self._owned_store = None
        self._lifecycle("runtime_stopped", self.name)

    # -- public API ------------------------------------------------------------
    @property
    def root(self) -> Supervisor:
        return self._root.handle

    @property
    def store(self) -> Store:
        if self._store is None:
            raise ShardlineError("this runtime has no store; pass Runtime(store=URL)")
        return self._store

    def now(self) -> float:
        """Seconds since this runtime started, on the runtime clock (virtual if simulated)."""
        return asyncio.get_running_loop().time() - self._epoch

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def wait_until(self, condition: Callable[[], bool | Awaitable[bool]], *,
                         deadline: float | None = None, poll: float = 0.05) -> bool:
        """Poll ``condition`` (plain or async) every ``poll`` seconds of the runtime
        clock until it holds (True) or ``deadline`` (runtime time) passes (False).

        Polling, not a notification, because what is awaited is usually durable
        state in the store that several actors change.
        """
        while True:
            held = condition()
            if not isinstance(held, bool):
                held = await held
            if held:
                return True
            if deadline is not None and self.now() >= deadline:
                return False
            await self.sleep(poll)

    async def spawn(
        self,
        cls: type[Actor[M]],
        *args: object,
        name: str | None = None,
        restart: Restart | str = Restart.PERMANENT,
        mailbox_capacity: int | None = None,
        shutdown_timeout: float | None = None,
        **kwargs: object,
    ) -> ActorRef[M]:
        """Start an actor under the root supervisor; see :meth:`Supervisor.spawn`."""
        return await self._root.handle.spawn(
            cls, *args, name=name, restart=restart, mailbox_capacity=mailbox_capacity,
            shutdown_timeout=shutdown_timeout, **kwargs)

    async def spawn_supervisor(
        self,
        name: str | None = None,
        *,
        strategy: Strategy | str = Strategy.ONE_FOR_ONE,
        max_restarts: int = 3,
        within: float = 5.0,
        backoff: Backoff | None = None,
        restart: Restart | str = Restart.PERMANENT,
    ) -> Supervisor:
        return await self._root.handle.spawn_supervisor(
            name, strategy=strategy, max_restarts=max_restarts, within=within,
            backoff=backoff, restart=restart)

    def lookup(self, name: str) -> ActorRef[Message]:
        """The ref of the live actor registered as ``name``; ``NoSuchActor`` otherwise."""
        cell = self._registry.get(name)
        if cell is None:
            raise NoSuchActor(f"no live actor named {name!r}")
        ref: ActorRef[Message] = cell.ref
        return ref

    def actors(self) -> list[str]:
        """Names of the live actors, in registration order."""
        return list(self._registry)

    async def stop(self, ref: ActorRef[Any]) -> None:
        """Stop an actor for good, wherever it sits in the tree."""
        if not isinstance(ref, _LocalRef):
            raise TypeError(f"{ref!r} is not an actor of this runtime; stop it on its node")
        cell = ref._cell
        await cell.parent.stop_child(cell)

    def send_after(self, delay: float, ref: ActorRef[M], msg: M) -> Timer:
        """Deliver ``msg`` to ``ref`` after ``delay`` seconds on the runtime clock."""
        ref._check(msg)
        timer = Timer(self._timers)

        def fire() -> None:
            timer._handle = None
            timer._release()
            if not timer.cancelled:
                ref._system_deliver(msg)

        timer._handle = asyncio.get_running_loop().call_later(delay, fire)
        return timer

    # -- the cluster ---------------------------------------------------------------
    def _node(self) -> ClusterNode:
        if self._cluster is None:
            from runtime.cluster._errors import ClusterError

            raise ClusterError("this runtime is not a cluster node; pass Runtime(cluster=...)")
        return self._cluster

    @property
    def node_name(self) -> str | None:
        """This node's name in its cluster (``None`` without a cluster)."""
        return self._cluster.name if self._cluster is not None else None

    def register_entity(self, cls: type[Actor[Any]]) -> None:
        """Let this node host entities of ``cls`` (kind: the class name)."""
        node = self._node()
        node.membership.add_kind(node.host.register(cls))
        node.host.rebalance()

    def entity(self, cls: type[Actor[M]], key: str) -> ActorRef[M]:
        """The ref of entity ``key`` of ``cls``, valid on every node; no round trip."""
        from runtime.cluster._refs import EntityRef

        if not (isinstance(cls, type) and issubclass(cls, Actor)):
            raise TypeError(f"entity needs an Actor subclass, got {cls!r}")
        if not isinstance(key, str) or not key:
            raise ValueError(f"an entity key must be a non-empty str, got {key!r}")
        return EntityRef(self._node(), cls, cls.__name__, key)

    def remote(self, node: str, name: str, cls: type[Actor[M]]) -> ActorRef[M]:
        """The ref of actor ``name`` (of class ``cls``) on cluster node ``node``."""
        ref: ActorRef[M] = self._node().remote(node, name, cls)
        return ref

    def nodes(self) -> list[str]:
        """Names of the live nodes of the cluster, sorted (this one included)."""
        return sorted(self._node().membership.live)

    def cluster_statistics(self) -> ClusterStatistics:
        return self._node().statistics()

    def statistics(self) -> list[ActorStatistics]:
        return [cell.statistics() for cell in self._registry.values()]

    async def wait_failed(self) -> BaseException:
        """Wait until an escalation reaches the root; returns the failure."""
        await self._failed.wait()
        assert self.failure is not None
        return self.failure

    # -- internals used by cells and supervisors -------------------------------
    def _claim_name(self, name: str | None, prefix: str) -> str:
        if name is None:
            n = self._auto_names.get(prefix, 0) + 1
            while f"{prefix}-{n}" in self._registry or f"{prefix}-{n}" in self._supervisors:
                n += 1
            self._auto_names[prefix] = n
            return f"{prefix}-{n}"
        if not name:
            raise ValueError("actor name must not be empty")
        if name in self._registry or name in self._supervisors:
            raise NameTaken(f"name {name!r} is already taken by a live actor or supervisor")
        return name

    def _register(self, cell: _ActorCell) -> None:
        self._registry[cell.name] = cell
        self.faults.on_register(cell)

    def _unregister(self, cell: _ActorCell) -> None:
        if self._registry.get(cell.name) is cell:
            del self._registry[cell.name]

    def _register_supervisor(self, node: _SupervisorNode) -> None:
        self._supervisors[node.name] = node

    def _unregister_supervisor(self, node: _SupervisorNode) -> None:
        if self._supervisors.get(node.name) is node:
            del self._supervisors[node.name]

    def _lifecycle(self, kind: str, actor: str, detail: str = "") -> None:
        self.trace.record(self.now(), kind, actor, detail)

    def _dead_letter(self, actor: str, msg: object) -> None:
        self.dead_letters += 1
        self.trace.record(self.now(), "dead_letter", actor, type(msg).__name__)
        _log.info("message.dead_letter", actor=actor, message=type(msg).__name__)

    def _fatal(self, error: BaseException) -> None:
        if self.failure is None:
            self.failure = error
            _log.critical("runtime.failed", error=str(error))
            self._failed.set()
