"""``shardline node`` says READY only once a peer answered: a node with the wrong secret
is refused even when its only peer drops out of the membership while it asks (a lapsed
lease on a loaded machine), and the first node of a cluster is not kept waiting.
Simulated nodes on a seeded simulated network, simulated time."""

from __future__ import annotations

import asyncio

import runtime
from runtime import Clock, Cluster, Runtime
from runtime._node_cli import _refused_by
from runtime.cluster import SimulatedNetwork
from runtime.cluster._agent import AGENT_NAME, NodeAgent
from runtime.store import open_store

SECRET = "refusal-test-secret"


def _refusal(*, newcomer_secret: str, pause_peer: float = 0.0,
             peer: bool = True) -> tuple[list[str], float]:
    """What ``_refused_by`` says on node-2 (window 2 s), and how long it took."""

    async def main() -> tuple[list[str], float]:
        net = SimulatedNetwork()
        store = await open_store("memory://", clock=Clock(asyncio.get_running_loop(), True).wall)
        async with Runtime(store=store, cluster=Cluster(
                secret=SECRET, name="node-1", network=net, lease_ttl=1.0)) as first:
            await first.spawn(NodeAgent, name=AGENT_NAME)
            if not peer:
                return await _refused_by(first, 2.0), 0.0
            async with Runtime(store=store, cluster=Cluster(
                    secret=newcomer_secret, name="node-2", network=net,
                    lease_ttl=1.0)) as newcomer:
                await newcomer.spawn(NodeAgent, name=AGENT_NAME)
                if pause_peer:  # node-1 stops renewing: its lease lapses meanwhile
                    net.pause_node("node-1", pause_peer)
                began = newcomer.now()
                refused = await _refused_by(newcomer, 2.0)
                return refused, newcomer.now() - began

    result: tuple[list[str], float] = runtime.run(main, simulated=True, seed=3)
    return result


def test_a_node_with_the_wrong_secret_is_refused_by_its_peer() -> None:
    refused, took = _refusal(newcomer_secret="not-the-secret")
    assert refused == ["node-1"]
    assert took >= 2.0


def test_a_peer_that_drops_out_meanwhile_does_not_let_a_wrong_secret_in() -> None:
    refused, _ = _refusal(newcomer_secret="not-the-secret", pause_peer=5.0)
    assert refused == ["node-1"]


def test_a_node_with_the_secret_is_accepted_at_the_first_answer() -> None:
    refused, took = _refusal(newcomer_secret=SECRET)
    assert refused == []
    assert took < 1.0


def test_the_first_node_of_a_cluster_is_accepted_at_once() -> None:
    assert _refusal(newcomer_secret=SECRET, peer=False) == ([], 0.0)
