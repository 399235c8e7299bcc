"""A cluster-network partition of a real node: the links it cuts, and until when.

Policy (the twin of ``SimulatedNetwork.partition`` for node processes):

- ``cut(peers, seconds)`` makes this node drop every frame it would send to
  those peers (the outbox discards what is queued and closes its
  connection) and close every inbound connection from them, after their
  ``Hello`` or at their next frame, for ``seconds`` on this node's clock;
  then the cut heals by itself (no message is needed to heal, so a cut
  ends even if whoever asked for it died).
- Only the cluster network is cut: the store stays reachable from both
  sides, so membership still lists the cut peers as live and leases keep
  their rules (an entity's node keeps renewing its lease and stays the one
  writer; the other side's messages to it are retried until it heals).
- Cutting is what both sides do: the driver asks each side's node agent
  (``runtime.cluster._agent.CutLinks``), so frames are dropped in both
  directions even though each node only controls its own sockets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


class LinkCuts:
    """The peers one node is cut from, each until a loop time."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}
        self.cuts = 0
        self.dropped = 0

    def cut(self, peers: Iterable[str], seconds: float) -> None:
        until = asyncio.get_running_loop().time() + seconds
        for peer in peers:
            self._until[peer] = max(until, self._until.get(peer, until))
        self.cuts += 1

    def is_cut(self, peer: str) -> bool:
        until = self._until.get(peer)
        if until is None:
            return False
        if asyncio.get_running_loop().time() < until:
            return True
        del self._until[peer]
        return False

    def healing_in(self, peer: str) -> float:
        """Seconds until the cut from ``peer`` heals (0 when there is none)."""
        until = self._until.get(peer)
        return 0.0 if until is None else max(0.0, until - asyncio.get_running_loop().time())
