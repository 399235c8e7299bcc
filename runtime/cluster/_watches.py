"""Watching actors across nodes.

``watch`` of a remote actor registers this node's interest with the actor's
node (one ``Watch`` per remote actor, however many local watchers), which
forwards the actor's stop as ``Down``; every local watcher then gets
``Terminated`` with the stop's reason. When the actor's *node* is declared
dead, its watchers get ``Terminated(reason="node_down")`` (``node_left``
after a graceful exit). Watching an actor of a node already known dead
answers at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runtime._actor import Actor
from runtime._message import Terminated
from runtime.cluster import _frames as f

if TYPE_CHECKING:
    from runtime._cell import _ActorCell
    from runtime._ref import ActorRef
    from runtime.cluster._node import ClusterNode


class _Watcher(Actor[Terminated]):
    """Forwards the stop of a local actor to the remote nodes watching it."""

    def __init__(self, watches: RemoteWatches) -> None:
        self.watches = watches

    async def receive(self, msg: Terminated) -> None:
        self.watches.local_down(msg.actor, msg.reason)


class RemoteWatches:
    def __init__(self, node: ClusterNode) -> None:
        self.node = node
        self._watching: dict[tuple[str, str], dict[_ActorCell, None]] = {}
        self._watched_by: dict[str, dict[str, None]] = {}
        self._down: dict[tuple[str, str], None] = {}
        self.dead_nodes: dict[str, None] = {}
        self._watcher: ActorRef[Any] | None = None

    async def start(self) -> None:
        node = self.node
        self._watcher = await node.rt.spawn(_Watcher, self, name=f"cluster.watcher.{node.name}")

    # -- this node watching others -------------------------------------------
    def watch(self, peer: str, actor: str, watcher: _ActorCell) -> None:
        if (peer, actor) in self._down or peer in self.dead_nodes:
            watcher.system_deliver(Terminated(actor=actor, reason="node_down"))
            return
        watchers = self._watching.setdefault((peer, actor), {})
        if not watchers:
            self.node.post(peer, f.Watch(actor))
        watchers[watcher] = None

    def unwatch(self, peer: str, actor: str, watcher: _ActorCell) -> None:
        watchers = self._watching.get((peer, actor))
        if watchers is not None:
            watchers.pop(watcher, None)
            if not watchers:
                del self._watching[(peer, actor)]
                self.node.post(peer, f.Unwatch(actor))

    def alive(self, peer: str, actor: str) -> bool:
        return (peer, actor) not in self._down and peer not in self.dead_nodes

    def remote_down(self, peer: str, actor: str, reason: str) -> None:
        self._down[(peer, actor)] = None
        for cell in self._watching.pop((peer, actor), {}):
            cell.system_deliver(Terminated(actor=actor, reason=reason))

    def node_joined(self, peer: str) -> None:
        self.dead_nodes.pop(peer, None)
        for key in [k for k in self._down if k[0] == peer]:
            del self._down[key]

    def node_dead(self, peer: str, reason: str) -> None:
        self.dead_nodes[peer] = None
        for watched_peer, actor in [k for k in self._watching if k[0] == peer]:
            self.remote_down(watched_peer, actor, reason)
        for watchers in self._watched_by.values():
            watchers.pop(peer, None)

    # -- others watching this node's actors ----------------------------------
    def watched(self, peer: str, actor: str) -> None:
        cell = self.node.rt._registry.get(actor)
        if cell is None or self._watcher is None:
            self.node.post(peer, f.Down(actor, "no such actor"))
            return
        self._watched_by.setdefault(actor, {})[peer] = None
        cell.add_watcher(self._watcher._cell)  # type: ignore[attr-defined]

    def unwatched(self, peer: str, actor: str) -> None:
        self._watched_by.get(actor, {}).pop(peer, None)

    def local_down(self, actor: str, reason: str) -> None:
        for peer in self._watched_by.pop(actor, {}):
            self.node.post(peer, f.Down(actor, reason))
