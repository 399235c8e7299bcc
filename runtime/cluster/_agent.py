"""The node agent: one actor per node process that answers for the node.

Every ``shardline node`` spawns it under the name :data:`AGENT_NAME`. A
peer (another node, or the ``shardline run --nodes`` driver) asks it
:class:`DescribeNode` and gets a :class:`NodeReport`; a driver strikes the
node faults through it that it cannot inflict from outside (``CutLinks``
for a partition, ``KillNode`` on a node it did not start), and the actor
faults aimed at actors on the node (``ActorsStruck``, ``StrikeActor``,
``InstallFaults``: ``runtime.cluster._remote_faults``); any answer, even an
error, proves that the two processes share the cluster secret, because no
frame is read before the handshake. :func:`unreachable_peers` uses exactly
that to tell a node whose secret is wrong from one that merely has not
spawned its agent yet.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import msgspec
import structlog

from runtime._actor import Actor
from runtime._errors import AskTimeout, ShardlineError
from runtime._faults import Fault
from runtime._message import Message
from runtime._system import Runtime
from runtime.cluster._errors import LinkClosed
from runtime.cluster._self_faults import kill_self, pause_self

AGENT_NAME = "shardline.node"
_log = structlog.get_logger("shardline")


class DescribeNode(Message, frozen=True):
    """Ask a node agent for its :class:`NodeReport`."""


class NodeReport(msgspec.Struct, frozen=True):
    """What one node hosted and handled since it started.

    ``actors`` counts the live actors (the agent and entities included),
    ``entities`` the live entity activations, ``activations`` every entity
    activation since the node started, ``messages`` the messages its live
    actors received, ``restarts`` their restarts after a crash. ``cpu_s`` is
    the CPU time (user + system, ``time.process_time``) of the process the
    node runs in, since that process started: a node process's own cost,
    but the whole process's when several runtimes share one (simulated
    nodes).
    """

    node: str
    actors: int
    entities: int
    activations: int
    messages: int
    restarts: int
    cpu_s: float = 0.0
    faults: int = 0
    """Faults this node's own injector struck (a run's ``probability`` actor faults
    installed on it, and the actor faults a driver armed here once they applied)."""
    systems: list[str] | None = None
    """The scenario systems the node hosts (``shardline node --systems``); ``None``
    when its agent was not told (every installed one)."""


class CutLinks(Message, frozen=True):
    """Cut this node's cluster links to ``peers`` for ``seconds`` (``runtime.cluster._cuts``);
    answered with ``True`` once cut."""

    peers: list[str]
    seconds: float


class KillNode(Message, frozen=True):
    """SIGKILL this node's own process (a driver that did not start it cannot signal it);
    with ``restart_after`` its command line starts again that many seconds later (at
    least one lease TTL: ``runtime.cluster._self_faults``). There is no answer: the
    process is gone."""

    restart_after: float | None = None


class PauseNode(Message, frozen=True):
    """SIGSTOP this node's own process for ``seconds`` (a helper process sends SIGCONT);
    there is no answer: the process is stopped."""

    seconds: float


class ActorsStruck(Message, frozen=True):
    """The names of this node's actors that ``fault`` strikes (``FaultInjector.strikes``)."""

    fault: Fault


class StrikeActor(Message, frozen=True):
    """Arm ``fault`` on this node's actor ``name``; answered True, or False if absorbed.
    ``entry`` names the plan entry (``FaultInjector.plan_entry``)."""

    name: str
    fault: Fault
    entry: int


class InstallFaults(Message, frozen=True):
    """Install ``faults`` (probability actor faults) in this node's injector, their times
    counting from now; answered True."""

    faults: list[Fault]


AgentMsg = (DescribeNode | CutLinks | KillNode | PauseNode | ActorsStruck | StrikeActor
            | InstallFaults)


class NodeAgent(Actor[AgentMsg]):
    """Answers for this node: its report (naming ``systems``, the scenario systems it
    hosts, when given), and the node faults a driver asks of it."""

    def __init__(self, systems: Sequence[str] | None = None) -> None:
        self.systems = None if systems is None else list(systems)

    async def receive(self, msg: AgentMsg) -> NodeReport | bool | list[str]:
        faults = self.runtime.faults
        match msg:
            case ActorsStruck(fault=fault):
                return faults.candidates(fault)
            case StrikeActor(name=name, fault=fault, entry=entry):
                return faults.arm(name, fault, entry)
            case InstallFaults(faults=plan):
                faults.install(plan, origin=self.runtime.now())
                return True
            case CutLinks(peers=peers, seconds=seconds):
                self.runtime._node().cuts.cut(peers, seconds)
                self.log.warning("node.partitioned", peers=peers, seconds=seconds)
                return True
            case KillNode(restart_after=restart_after):
                self.log.warning("node.killing_itself", restart_after=restart_after)
                if self.runtime.simulated:  # a node of a simulation shares the process
                    self.runtime._node().kill()
                else:
                    kill_self(restart_after, self.runtime._node().config.lease_ttl)
            case PauseNode(seconds=seconds):
                self.log.warning("node.pausing_itself", seconds=seconds)
                if not self.runtime.simulated:
                    pause_self(seconds)
        return describe(self.runtime, self.systems)


def describe(rt: Runtime, systems: list[str] | None = None) -> NodeReport:
    """This node's :class:`NodeReport`, read from its actors' counters."""
    stats = rt.statistics()
    cluster = rt.cluster_statistics()
    return NodeReport(
        node=rt.node_name or "", actors=len(stats),
        entities=cluster.entities_active, activations=cluster.activations,
        messages=sum(s.received for s in stats), restarts=sum(s.restarted for s in stats),
        cpu_s=time.process_time(), faults=rt.faults.injected, systems=systems)


async def ask_report(rt: Runtime, node: str, timeout: float) -> NodeReport:
    """The report of ``node``'s agent; ``AskTimeout`` if no answer came in time."""
    reply = await rt.remote(node, AGENT_NAME, NodeAgent).ask(DescribeNode(), timeout=timeout)
    if isinstance(reply, NodeReport):  # the agent of this very node
        return reply
    return msgspec.convert(reply, NodeReport)  # a remote reply arrives as plain data


async def ask_agent(rt: Runtime, node: str, msg: AgentMsg, timeout: float, *,
                    failed: str, warn: bool = False, **context: str) -> object | None:
    """``node``'s agent's answer to ``msg`` (never ``None``); ``None`` when none came in
    ``timeout`` or it was an error, after logging ``failed`` (at info, or warning with
    ``warn``) with ``context``: the node may be down, paused or cut off."""
    try:
        return await rt.remote(node, AGENT_NAME, NodeAgent).ask(msg, timeout=timeout)
    except ShardlineError as exc:
        log = _log.warning if warn else _log.info
        log(failed, node=node, error=f"{type(exc).__name__}: {exc}", **context)
        return None


async def cut_apart(rt: Runtime, groups: list[list[str]], seconds: float,
                    timeout: float = 2.0) -> list[str]:
    """Ask every node of each group to cut its links to the nodes of the other groups for
    ``seconds``; the nodes whose agent did not confirm (they may be down). The asker may
    be in a group itself (its own agent must be spawned then)."""

    async def cut(node: str, peers: list[str]) -> bool:
        return await ask_agent(rt, node, CutLinks(peers, float(seconds)), timeout,
                               failed="node.cut_failed", warn=True) is not None

    orders = [(node, [peer for other in groups if other is not group for peer in other])
              for group in groups for node in group]
    # The asker's own links are cut by the asker alone, and last (one side's cut severs
    # both directions): a node that cut the asker could not confirm, and the asker's
    # cut would drop its asks to the other side.
    remote = [(node, [peer for peer in peers if peer != rt.node_name])
              for node, peers in orders if node != rt.node_name]
    done = await asyncio.gather(*(cut(node, peers) for node, peers in remote))
    missed = [node for (node, _), ok in zip(remote, done, strict=True) if not ok]
    for node, peers in orders:
        if node == rt.node_name and not await cut(node, peers):
            missed.append(node)
    return missed


async def unreachable_peers(rt: Runtime, timeout: float,
                            peers: Sequence[str] | None = None) -> list[str]:
    """The ``peers`` (default: every live peer) that gave no answer within ``timeout`` s.

    A peer whose agent is not spawned yet answers with an error, which
    proves the handshake passed; silence means the connection never got
    through it (a wrong secret, a firewall, a dead process). An error raised
    on this side (the link closed, this node down) is no answer either.
    """

    async def silent(peer: str) -> bool:
        try:
            await ask_report(rt, peer, timeout)
        except (AskTimeout, LinkClosed):
            return True
        except Exception:  # any other error came back from the peer: the secret matched
            return False
        return False

    if peers is None:
        peers = [name for name in rt.nodes() if name != rt.node_name]
    results = await asyncio.gather(*(silent(peer) for peer in peers))
    return [peer for peer, no_answer in zip(peers, results, strict=True) if no_answer]
