"""A scenario run across nodes: ``shardline run --nodes N`` / ``[scenario] nodes = N``.

Policy:

- The run's own runtime joins the cluster as the node ``driver``: it drives
  the workload and checks the invariants and hosts no entity, so every
  entity a system declares (``ScenarioSystem.register_node``) runs on
  ``node-1`` ... ``node-N``.
- ``clock = "real"``: the nodes are ``shardline node`` processes on
  loopback (``runtime._node_fleet``) sharing the run's store, which must
  be PostgreSQL, and a secret generated for the run; ``clock =
  "simulated"``: they are runtimes in this process on a seeded
  ``SimulatedNetwork``, sharing the run's store object (any backend: lease
  time must be the virtual clock, which a PostgreSQL server does not
  keep), so a seed replays node faults too.
- Node faults (``[[faults]]`` kinds ``kill_node``, ``pause_node``,
  ``partition``) strike only the node names: ``kill_node`` is SIGKILL (or
  its simulated twin), with ``restart_after`` the node is started again
  under the same name once its old membership lease has expired;
  ``pause_node`` is SIGSTOP for ``duration`` then SIGCONT; ``partition``
  cuts the groups of its target (``"node-1|node-2,node-3"``) apart for
  ``duration``: on simulated nodes in the simulated network, on processes
  through each node's agent, which drops the cluster frames to and from
  the other side and heals by itself (``runtime.cluster._cuts``). It is a
  cluster-network partition: the store stays reachable from both sides,
  and the driver from every node.
- Actor faults (``crash``, ``pause``, ``delay``, ``drop``, ``duplicate``)
  strike actors wherever they run: a time trigger chooses among the
  matching actors of the driver and of every live node, and the chosen
  one's node arms it; probability faults are installed on every node (and
  on a node started again). On a node a target names an entity by its key
  (``queue.server-*`` strikes ``QueueServerEntity/queue.server-2``) and an
  actor named ``<name>.<node>`` by ``<name>``
  (``runtime.cluster._remote_faults``).
- The report's ``nodes`` holds, per node, what its agent answered at the
  end (counters since its last start; ``cpu_s``, the node process's CPU
  seconds, for node processes only) and the kills, pauses and restarts the
  run inflicted.
"""

from __future__ import annotations

import asyncio
import fnmatch
import secrets
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec
import structlog

from runtime._background import BackgroundTasks
from runtime._errors import ScenarioError, ShardlineError
from runtime._faults import ACTOR_FAULT_KINDS, Fault
from runtime._node_fleet import NodeFleet, shared_store
from runtime._system import Runtime
from runtime.cluster._agent import AGENT_NAME, NodeAgent, NodeReport, ask_report, cut_apart
from runtime.cluster._config import Cluster
from runtime.cluster._remote_faults import NodeActors, install_on
from runtime.cluster._simnet import SimulatedNetwork
from runtime.scenario._loader import LoadedScenario, NodeExpect
from runtime.scenario._node_faults import check_node_faults, node_names
from runtime.scenario._registry import systems
from runtime.scenario._system_api import InvariantResult, ScenarioSystem, exercised_floors
from runtime.store._base import Store

NODE_LEASE_TTL = 2.0
DRIVER = "driver"
_log = structlog.get_logger("shardline")


class NodeTally(msgspec.Struct):
    """What the run did to one node, and what its agent said at the end."""

    state: str = "up"
    actors: int = 0
    entities: int = 0
    activations: int = 0
    messages: int = 0
    restarts: int = 0
    faults: int = 0
    """Faults the node's own injector struck (probability actor faults installed on it,
    and actor faults the driver armed there when they applied), since its last start."""
    cpu_s: float | None = None
    """CPU seconds of the node's process since its last start (None: simulated node)."""
    kills: int = 0
    pauses: int = 0
    node_restarts: int = 0


class ScenarioNodes(ABC):
    """``node-1`` ... ``node-N`` of one run; see the module docstring."""

    own_processes = False
    """Each node is an OS process of its own, so its agent's ``cpu_s`` is its cost."""

    def __init__(self, count: int) -> None:
        self.names = node_names(count)
        self.tally = {name: NodeTally() for name in self.names}
        self.partitions = 0
        self.driver: Runtime | None = None
        self._restarting: set[str] = set()
        self._tasks = BackgroundTasks()
        self._node_faults: list[Fault] = []

    @abstractmethod
    def driver_cluster(self) -> Cluster:
        """How the run's own runtime joins these nodes."""

    @abstractmethod
    async def start(self, driver: Runtime) -> None:
        """Start every node and wait until each joined (``ShardlineError`` naming one
        that could not)."""

    @abstractmethod
    def _kill(self, name: str) -> None: ...

    @abstractmethod
    def _pause(self, name: str, seconds: float) -> None: ...

    @abstractmethod
    async def _restart(self, name: str) -> None: ...

    def _partition(self, groups: list[list[str]], seconds: float) -> None:
        """Cut ``groups`` apart for ``seconds``; by default each side's node agents cut
        their own links (node processes, joined nodes), in the background."""
        self._tasks.spawn(self._cut_apart(groups, seconds))

    @abstractmethod
    async def stop(self) -> None: ...

    # -- faults ------------------------------------------------------------
    def install_faults(self, rt: Runtime, plan: Sequence[Fault]) -> None:
        """Make the node fault kinds of ``rt``'s plan strike these nodes.

        ``at`` and ``every`` faults go through ``rt.faults``; a ``probability``
        node fault is drawn once per second of the runtime clock for each
        matching node that is up (through the injector's seeded generator).
        """
        acts: dict[str, Callable[[Fault], None]] = {
            "kill_node": lambda fault: self._each(fault, self.kill),
            "pause_node": lambda fault: self._each(fault, self.pause),
            "partition": self.partition,
        }
        for kind, act in acts.items():
            rt.faults.register_kind(kind, act)
        for fault in plan:
            if fault.kind in acts and fault.probability is not None:
                self._tasks.spawn(self._draw_every_second(rt, fault, acts[fault.kind]))
        rt.faults.remote = NodeActors(rt, self.up)
        self._node_faults = [fault for fault in plan if fault.kind in ACTOR_FAULT_KINDS
                             and fault.probability is not None]
        if self._node_faults:
            for name in self.up():
                self._tasks.spawn(self._install_on(name))

    def up(self) -> list[str]:
        """The nodes that are up, as far as this run knows."""
        return [name for name in self.names if self.tally[name].state == "up"]

    async def _install_on(self, name: str) -> None:
        if self._node_faults and self.driver is not None:
            await install_on(self.driver, name, self._node_faults)

    async def _draw_every_second(self, rt: Runtime, fault: Fault,
                                 act: Callable[[Fault], None]) -> None:
        while True:
            await asyncio.sleep(1.0)
            targets = [name for name in self.names
                       if fault.matches(name) and self.tally[name].state == "up"]
            if fault.kind == "partition":
                targets = ["network"]
            for name in targets:
                if rt.faults.roll(fault):
                    rt.faults.record(fault, name)
                    act(fault if fault.kind == "partition"
                        else msgspec.structs.replace(fault, target=name))

    def _each(self, fault: Fault, act: Callable[[str, Fault], None]) -> None:
        for name in self.names:
            if fault.matches(name) and self.tally[name].state == "up":
                act(name, fault)

    def kill(self, name: str, fault: Fault) -> None:
        self._kill(name)
        self.tally[name].kills += 1
        self.tally[name].state = "killed"
        _log.warning("node.fault", kind="kill_node", node=name)
        if fault.restart_after is not None:
            self._tasks.spawn(self._restart_later(name, fault.restart_after))

    async def _restart_later(self, name: str, delay: float) -> None:
        self._restarting.add(name)
        try:
            await asyncio.sleep(delay)
            driver = self.driver
            if driver is not None:  # its name is free once its membership lease expired
                await driver.wait_until(lambda: name not in driver.nodes(),
                                        deadline=driver.now() + 3 * NODE_LEASE_TTL)
            await self._restart(name)
            if driver is not None:  # up once the driver's membership lists it again
                await driver.wait_until(lambda: name in driver.nodes(),
                                        deadline=driver.now() + 3 * NODE_LEASE_TTL)
        except ShardlineError as exc:
            _log.error("node.restart_failed", node=name, error=str(exc))
            return
        finally:
            self._restarting.discard(name)
        self.tally[name].state = "up"
        self.tally[name].node_restarts += 1
        if self._node_faults:
            await self._install_on(name)

    def pause(self, name: str, fault: Fault) -> None:
        self._pause(name, fault.duration)
        self.tally[name].pauses += 1
        _log.warning("node.fault", kind="pause_node", node=name, seconds=fault.duration)

    async def _cut_apart(self, groups: list[list[str]], seconds: float) -> None:
        """A partition of node processes: each side's agents cut their own links."""
        assert self.driver is not None
        missed = await cut_apart(self.driver, groups, seconds)
        if missed:
            _log.warning("node.partition_unconfirmed", nodes=missed)

    def partition(self, fault: Fault) -> None:
        groups = [[n for n in self.names
                   if any(fnmatch.fnmatchcase(n, glob) for glob in group.split(","))]
                  for group in fault.target.split("|")]
        self._partition(groups, fault.duration)
        self.partitions += 1
        _log.warning("node.fault", kind="partition", groups=groups, seconds=fault.duration)


    # -- report ------------------------------------------------------------
    async def report(self, driver: Runtime) -> dict[str, NodeTally]:
        """Each node's tally, with what its agent answers now (a node that does not
        answer three asks of 2 s each is reported ``unreachable``: a just-restarted
        node on a loaded machine may miss the first). A restart under way is
        awaited first (at most a few lease TTLs)."""
        await driver.wait_until(lambda: not self._restarting,
                                deadline=driver.now() + 5 * NODE_LEASE_TTL)
        for name, tally in self.tally.items():
            if tally.state != "up":
                continue
            got = await _report_of(driver, name, attempts=3)
            if got is None:
                tally.state = "unreachable"
                continue
            tally.actors, tally.entities = got.actors, got.entities
            tally.activations = got.activations
            tally.messages, tally.restarts = got.messages, got.restarts
            tally.faults = got.faults
            if self.own_processes:
                tally.cpu_s = got.cpu_s
        return self.tally


async def _report_of(driver: Runtime, name: str, attempts: int) -> NodeReport | None:
    """``name``'s agent report, asked up to ``attempts`` times; None if none came."""
    for _ in range(attempts):
        try:
            return await ask_report(driver, name, 2.0)
        except ShardlineError:
            continue
    return None


async def host_everything(rt: Runtime,
                          hosted: Sequence[ScenarioSystem[object, object]] | None = None) -> None:
    """What every node does before it serves: declare each hosted system's entities
    (every installed system's by default), then start its node-local actors."""
    chosen = list(systems().values()) if hosted is None else hosted
    for system in chosen:
        system.register_node(rt)
    for system in chosen:
        await system.start_node(rt)


class ProcessNodes(ScenarioNodes):
    """``shardline node`` processes on loopback (real clock)."""

    own_processes = True

    def __init__(self, count: int, store: str, logs: Path,
                 systems: Sequence[str] | None = None) -> None:
        super().__init__(count)
        self._secret = secrets.token_hex(16)
        self.fleet = NodeFleet(store, self._secret, logs, lease_ttl=NODE_LEASE_TTL,
                               systems=systems)

    def driver_cluster(self) -> Cluster:
        return Cluster(secret=self._secret, name=DRIVER, lease_ttl=NODE_LEASE_TTL)

    async def start(self, driver: Runtime) -> None:
        await asyncio.to_thread(self.fleet.start, self.names)
        await driver.wait_until(lambda: set(self.names) <= set(driver.nodes()),
                                deadline=driver.now() + 10)

    def _kill(self, name: str) -> None:
        self.fleet.kill(name)

    def _pause(self, name: str, seconds: float) -> None:
        self.fleet.pause(name)
        asyncio.get_running_loop().call_later(seconds, self.fleet.resume, name)

    async def _restart(self, name: str) -> None:
        # a new process under the name is refused while the old membership lease lives
        for _attempt in range(5):
            try:
                await asyncio.to_thread(self.fleet.restart, name)
                return
            except ShardlineError as exc:
                _log.info("node.restart_retry", node=name, error=str(exc))
                await asyncio.sleep(NODE_LEASE_TTL / 2)
        await asyncio.to_thread(self.fleet.restart, name)

    async def stop(self) -> None:
        self._tasks.cancel()
        await asyncio.to_thread(self.fleet.stop)


class SimulatedNodes(ScenarioNodes):
    """Runtimes in this process on a seeded simulated network (simulated clock)."""

    def __init__(self, count: int) -> None:
        super().__init__(count)
        self.net = SimulatedNetwork()
        self._secret = "simulated-cluster"
        self.runtimes: dict[str, Runtime] = {}
        self._store: Store | None = None

    def driver_cluster(self) -> Cluster:
        return Cluster(secret=self._secret, name=DRIVER, network=self.net,
                       lease_ttl=NODE_LEASE_TTL)

    async def start(self, driver: Runtime) -> None:
        self._store = driver.store
        for name in self.names:
            await self._start_one(name)
        await driver.wait_until(lambda: set(self.names) <= set(driver.nodes()),
                                deadline=driver.now() + 10)

    async def _start_one(self, name: str) -> None:
        assert self._store is not None
        rt = Runtime(store=self._store, cluster=Cluster(
            secret=self._secret, name=name, network=self.net, lease_ttl=NODE_LEASE_TTL))
        await rt.__aenter__()
        await host_everything(rt)
        await rt.spawn(NodeAgent, name=AGENT_NAME)
        self.runtimes[name] = rt

    def _kill(self, name: str) -> None:
        self.net.kill_node(name)
        self.runtimes.pop(name)

    def _pause(self, name: str, seconds: float) -> None:
        self.net.pause_node(name, seconds)

    async def _restart(self, name: str) -> None:
        for _attempt in range(5):
            try:
                await self._start_one(name)
                return
            except ShardlineError as exc:
                _log.info("node.restart_retry", node=name, error=str(exc))
                await asyncio.sleep(NODE_LEASE_TTL / 2)
        await self._start_one(name)

    def _partition(self, groups: list[list[str]], seconds: float) -> None:
        self.net.partition(*groups)
        asyncio.get_running_loop().call_later(seconds, self.net.heal)

    async def stop(self) -> None:
        self._tasks.cancel()
        for name in list(self.runtimes):
            await self.runtimes.pop(name).shutdown()


def scenario_nodes(count: int, clock: str, store: str, out_dir: Path,
                   system: str | None = None) -> ScenarioNodes:
    """The nodes of a run; node processes host only ``system`` when it is given (the
    run's own: they start in a third of the time without deploy's scipy)."""
    if clock == "simulated":
        return SimulatedNodes(count)
    return ProcessNodes(count, store, out_dir / "nodes",
                        systems=None if system is None else [system])


def check_node_run(loaded: LoadedScenario, count: int, store: str) -> None:
    """A run across ``count`` nodes is possible: ``ScenarioError`` naming why not."""
    if count < 1:
        raise ScenarioError(f"--nodes: expected at least 1 node, got {count}")
    if loaded.header.clock == "real":  # simulated nodes share this process's store object
        try:
            shared_store(store, option=f"--nodes {count}: store")
        except ValueError as exc:
            raise ScenarioError(str(exc)) from None
    check_node_faults(loaded.path, loaded.faults, count, loaded.header.clock)


async def start_nodes(nodes: ScenarioNodes, driver: Runtime, plan: Sequence[Fault]) -> None:
    """Start the nodes and route the node fault kinds to them; ``ScenarioError`` naming
    a node that could not join (the others are stopped)."""
    nodes.driver = driver
    try:
        await nodes.start(driver)
    except ShardlineError as exc:
        await nodes.stop()
        raise ScenarioError(str(exc)) from None
    nodes.install_faults(driver, plan)


def node_floors(expect: NodeExpect, nodes: ScenarioNodes) -> list[InvariantResult]:
    """``exercised_node_kills`` and the like, for the floors ``[expect]`` sets."""
    tallies = nodes.tally
    return exercised_floors([
        ("node_kills", expect.node_kills, sum(t.kills for t in tallies.values())),
        ("node_pauses", expect.node_pauses, sum(t.pauses for t in tallies.values())),
        ("node_partitions", expect.node_partitions, nodes.partitions),
    ])
