"""``shardline run --join``: drive a scenario through a cluster started by hand.

Policy:

- The run's runtime joins the cluster of ``--store`` (PostgreSQL only) as
  the node ``driver``, proving the secret of ``--secret-file`` /
  ``--secret-env``, and listening on ``--listen`` (loopback unless told:
  the nodes answer the driver over a connection to that address). It
  starts no node and stops none: the scenario's nodes are the ``shardline
  node`` processes that are live in the store's membership when it starts.
- It waits up to :data:`JOIN_WAIT` seconds for at least one live node, and
  then for one that answers through the handshake (and then until the
  membership held still for one lease TTL); neither is a
  ``ScenarioError`` (exit 2) naming the store, and for the second, the
  secret. The clock is real (the nodes keep the real one), so a scenario
  with ``clock = "simulated"`` is refused.
- Node faults are asked of the target's own agent, which acts on its own
  process (the driver may not be on its machine, so it cannot signal it):
  ``kill_node`` SIGKILLs it, and with ``restart_after`` a helper process the
  node started first runs the same command line again once that long (and
  at least its lease TTL) has passed; ``pause_node`` SIGSTOPs it, a helper
  sending SIGCONT after ``duration``; ``partition`` cuts each side's
  cluster links (``runtime.cluster._self_faults``, ``_cuts``). Every
  ``kill_node`` / ``pause_node`` target and every ``partition`` group must
  match a live node when the run starts.
- Every live node must host the run's system: one started with
  ``shardline node --systems`` naming others is a ``ScenarioError`` naming
  it, the system and the option (it could never run the system's actors:
  the run would wait for them until its timeout).
"""

from __future__ import annotations

import asyncio
import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from runtime._errors import ScenarioError, ShardlineError
from runtime._faults import Fault
from runtime._node_fleet import shared_store
from runtime._system import Runtime
from runtime.cluster._agent import (
    AGENT_NAME,
    KillNode,
    NodeAgent,
    PauseNode,
    ask_report,
    unreachable_peers,
)
from runtime.cluster._config import Cluster
from runtime.scenario._loader import LoadedScenario
from runtime.scenario._node_faults import NODE_FAULT_KINDS, target_globs
from runtime.scenario._nodes import DRIVER, NODE_LEASE_TTL, NodeTally, ScenarioNodes
from runtime.store._url import shown_url

JOIN_WAIT = 10.0
"""Seconds a ``--join`` run waits for a live node that answers."""
_log = structlog.get_logger("shardline")


@dataclass(frozen=True)
class JoinOptions:
    """How a run joins an existing cluster (the secret is never printed)."""

    secret: str
    listen: str = "127.0.0.1:0"


def check_join_run(loaded: LoadedScenario, store: str) -> None:
    """A ``--join`` run of ``loaded`` on ``store`` is possible: ``ScenarioError`` naming why
    not (the file and field for a fault)."""
    try:
        shared_store(store, option="--join: store")
    except ValueError as exc:
        raise ScenarioError(str(exc)) from None
    if loaded.header.clock != "real":
        raise ScenarioError(
            f"{loaded.path}: scenario.clock: --join drives node processes, which keep the "
            f"real clock; expected clock = \"real\" (the default with --join), got "
            f"{loaded.header.clock!r}")


class JoinedNodes(ScenarioNodes):
    """The live ``shardline node`` processes of a cluster this run did not start."""

    def __init__(self, options: JoinOptions, store: str, faults: Sequence[Fault],
                 path: str, system: str) -> None:
        super().__init__(0)
        self._system = system
        self._options = options
        self._store = store
        self._faults = faults
        self._path = path
        self._restart_after: dict[str, float | None] = {}

    def driver_cluster(self) -> Cluster:
        return Cluster(listen=self._options.listen, secret=self._options.secret, name=DRIVER,
                       lease_ttl=NODE_LEASE_TTL)

    async def start(self, driver: Runtime) -> None:
        where = f"--join: the cluster of {shown_url(self._store)}"
        deadline = driver.now() + JOIN_WAIT
        await driver.wait_until(lambda: len(driver.nodes()) > 1, deadline=deadline)
        names = [name for name in driver.nodes() if name != driver.node_name]
        if not names:
            raise ScenarioError(f"{where} has no live node after {JOIN_WAIT:g} s; start "
                                "nodes with `shardline node --store ...` first")
        while len(await unreachable_peers(driver, 1.0)) == len(names):
            if driver.now() >= deadline:
                raise ScenarioError(
                    f"{where}: none of its nodes ({', '.join(names)}) answered through the "
                    "cluster handshake; is the secret the same as the nodes'?")
            await asyncio.sleep(0.25)
        names = await self._settled(driver, names)
        self.names = names
        self.tally = {name: NodeTally() for name in names}
        for index, fault in enumerate(self._faults):
            if fault.kind not in NODE_FAULT_KINDS:
                continue
            for glob in target_globs(fault):
                if not any(fnmatch.fnmatchcase(name, glob) for name in names):
                    raise ScenarioError(
                        f"{self._path}: faults[{index}].target: {glob!r} matches no live "
                        f"node of the cluster; expected a name or glob matching one of: "
                        f"{', '.join(names)}")
        await self._check_hosted(driver, names, where)
        _log.info("run.joined", nodes=names)

    async def _check_hosted(self, driver: Runtime, names: list[str], where: str) -> None:
        """``ScenarioError`` naming the nodes that host other systems than the run's (a
        node whose agent does not answer in time is taken as hosting it)."""
        lacking: list[str] = []
        hosted: set[str] = set()
        for name in names:
            try:
                report = await ask_report(driver, name, JOIN_WAIT / 2)
            except ShardlineError:
                continue
            if report.systems is not None and self._system not in report.systems:
                lacking.append(name)
                hosted.update(report.systems)
        if lacking:
            raise ScenarioError(
                f"{where}: node {', '.join(lacking)} does not host system {self._system!r} "
                f"(started with `shardline node --systems {','.join(sorted(hosted))}`); "
                f"expected every node to host it: start them with --systems naming "
                f"{self._system}, or without --systems")

    @staticmethod
    async def _settled(driver: Runtime, names: list[str]) -> list[str]:
        """The live nodes once the membership held still for one lease TTL (a node that
        just started, or whose renewal was late, may be rejoining)."""
        stable_since = driver.now()
        while driver.now() - stable_since < NODE_LEASE_TTL:
            await asyncio.sleep(NODE_LEASE_TTL / 8)
            now = [name for name in driver.nodes() if name != driver.node_name]
            if now != names and now:
                names, stable_since = now, driver.now()
        return names

    def kill(self, name: str, fault: Fault) -> None:
        self._restart_after[name] = fault.restart_after
        super().kill(name, fault)

    def _kill(self, name: str) -> None:
        after = self._restart_after.pop(name, None)  # a Duration: plain seconds on the wire
        self._tell(name, KillNode(None if after is None else float(after)))

    def _pause(self, name: str, seconds: float) -> None:
        self._tell(name, PauseNode(float(seconds)))

    async def _restart(self, name: str) -> None:
        """The node starts itself again (``KillNode.restart_after``): wait until it is
        listed, ``ShardlineError`` if it is not within :data:`JOIN_WAIT` seconds."""
        driver = self.driver
        assert driver is not None
        await driver.wait_until(lambda: name in driver.nodes(),
                                deadline=driver.now() + JOIN_WAIT)

    def _tell(self, name: str, msg: KillNode | PauseNode) -> None:
        assert self.driver is not None
        try:
            self.driver.remote(name, AGENT_NAME, NodeAgent).tell_nowait(msg)
        except ShardlineError as exc:
            _log.error("node.fault_failed", node=name, error=str(exc))

    async def stop(self) -> None:
        """The nodes are not this run's: they keep running."""
        self._tasks.cancel()
