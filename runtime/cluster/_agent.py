"""The node agent: one actor per node process that answers for the node.

Every ``shardline node`` spawns it under the name :data:`AGENT_NAME`. A
peer (another node, or the ``shardline run --nodes`` driver) asks it
:class:`DescribeNode` and gets a :class:`NodeReport`; any answer, even an
error, proves that the two processes share the cluster secret, because no
frame is read before the handshake. :func:`unreachable_peers` uses exactly
that to tell a node whose secret is wrong from one that merely has not
spawned its agent yet.
"""

from __future__ import annotations

import asyncio
import time

import msgspec

from runtime._actor import Actor
from runtime._errors import AskTimeout
from runtime._message import Message
from runtime._system import Runtime

AGENT_NAME = "shardline.node"


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


class NodeAgent(Actor[DescribeNode]):
    """Answers :class:`DescribeNode` with this node's :class:`NodeReport`."""

    async def receive(self, msg: DescribeNode) -> NodeReport:
        return describe(self.runtime)


def describe(rt: Runtime) -> NodeReport:
    """This node's :class:`NodeReport`, read from its actors' counters."""
    stats = rt.statistics()
    cluster = rt.cluster_statistics()
    return NodeReport(
        node=rt.node_name or "", actors=len(stats),
        entities=cluster.entities_active, activations=cluster.activations,
        messages=sum(s.received for s in stats), restarts=sum(s.restarted for s in stats),
        cpu_s=time.process_time())


async def ask_report(rt: Runtime, node: str, timeout: float) -> NodeReport:
    """The report of ``node``'s agent; ``AskTimeout`` if no answer came in time."""
    reply = await rt.remote(node, AGENT_NAME, NodeAgent).ask(DescribeNode(), timeout=timeout)
    if isinstance(reply, NodeReport):  # the agent of this very node
        return reply
    return msgspec.convert(reply, NodeReport)  # a remote reply arrives as plain data


async def unreachable_peers(rt: Runtime, timeout: float) -> list[str]:
    """The live peers that gave no answer at all within ``timeout`` seconds.

    A peer whose agent is not spawned yet answers with an error, which
    proves the handshake passed; silence means the connection never got
    through it (a wrong secret, a firewall, a dead process).
    """

    async def silent(peer: str) -> bool:
        try:
            await ask_report(rt, peer, timeout)
        except AskTimeout:
            return True
        except Exception:  # any answer proves the secret matched
            return False
        return False

    peers = [name for name in rt.nodes() if name != rt.node_name]
    results = await asyncio.gather(*(silent(peer) for peer in peers))
    return [peer for peer, no_answer in zip(peers, results, strict=True) if no_answer]
