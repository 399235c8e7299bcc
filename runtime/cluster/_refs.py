"""Refs to actors on other nodes and to entities: the ``ActorRef`` contract, remotely.

Both check a message against the actor class's union at the sender (a
wrong type is a ``TypeError`` there, before anything is sent). A remote
ref sends at most once, in per-sender order, over this node's connection
to the actor's node; an entity ref goes through the router (``_routing``).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, TypeVar

from runtime._errors import MailboxFull, ShardlineError
from runtime._message import Message
from runtime._ref import ActorRef, check_accepts
from runtime._stats import ActorStatistics
from runtime.cluster._frames import AskOut, TellOut

if TYPE_CHECKING:
    from runtime._actor import Actor
    from runtime._cell import _ActorCell
    from runtime.cluster._node import ClusterNode
    from runtime.cluster._outbox import Outbox

M = TypeVar("M", bound=Message)


class RemoteRef(ActorRef[M]):
    """The ref of actor ``name`` on cluster node ``node``."""

    __slots__ = ("_accepts", "_exact", "_node", "_peer", "node")

    def __init__(self, cluster: ClusterNode, node: str, name: str,
                 cls: type[Actor[Any]]) -> None:
        self._node = cluster
        self._peer = node
        self.node = node
        self.name = name
        self._accepts = cls.accepts
        self._exact = cls.accepts_exact

    def __repr__(self) -> str:
        return f"ActorRef({self.name!r}, node={self.node!r})"

    def _check(self, msg: object) -> None:
        check_accepts(self.name, self._accepts, self._exact, msg)

    def _outbox(self, msg: object) -> Outbox | None:
        """The way to the actor's node; ``None`` (and ``msg`` is a dead letter, as to a
        stopped actor) once that node is known dead."""
        if self._peer in self._node.watches.dead_nodes:
            self._node.rt._dead_letter(f"{self.name}@{self._peer}", msg)
            return None
        return self._node.outbox(self._peer)

    def _checked_outbox(self, msg: object) -> Outbox | None:
        if type(msg) not in self._exact:
            self._check(msg)
        return self._node.outboxes.get(self._peer) or self._outbox(msg)

    async def tell(self, msg: M) -> None:
        outbox = self._checked_outbox(msg)
        if outbox is not None:
            if outbox.full:
                await outbox.wait_for_room()
            outbox.put(TellOut(self.name, msg))

    def tell_nowait(self, msg: M) -> None:
        outbox = self._checked_outbox(msg)
        if outbox is not None:
            if outbox.full:
                raise MailboxFull(f"{self.name}@{self.node}", type(msg).__name__,
                                  outbox.capacity)
            outbox.put(TellOut(self.name, msg))

    async def ask(self, msg: M, timeout: float = 5.0) -> object:
        if type(msg) not in self._exact:
            self._check(msg)
        node = self._node
        outbox = None if self._peer in node.watches.dead_nodes else node.outbox(self._peer)
        if outbox is not None and outbox.full:
            await outbox.wait_for_room()
        call_id, reply = node.expect_reply(self._peer, self.name, type(msg).__name__, timeout)
        if outbox is not None:  # to a node known dead: nothing to send, the ask times out
            outbox.put(AskOut(call_id, self.name, msg))
        try:
            return await reply
        finally:
            node.forget_reply(call_id)

    @property
    def alive(self) -> bool:
        """False once the node is known to be down or the actor reported stopped."""
        return self._node.watches.alive(self._peer, self.name)

    def statistics(self) -> ActorStatistics:
        raise ShardlineError(f"statistics of {self!r} are kept on node {self.node!r}")

    def _add_watcher(self, watcher: _ActorCell) -> None:
        self._node.watches.watch(self._peer, self.name, watcher)

    def _remove_watcher(self, watcher: _ActorCell) -> None:
        self._node.watches.unwatch(self._peer, self.name, watcher)

    def _system_deliver(self, msg: object) -> None:
        outbox = self._outbox(msg)
        if outbox is not None:
            outbox.put(TellOut(self.name, msg))


class EntityRef(ActorRef[M]):
    """The ref of entity ``kind/key``: valid on every node, whether or not it is active."""

    __slots__ = ("_accepts", "_exact", "_key", "_kind", "_node")

    def __init__(self, cluster: ClusterNode, cls: type[Actor[Any]], kind: str, key: str) -> None:
        self._node = cluster
        self._kind = kind
        self._key = key
        self.name = f"{kind}/{key}"
        self._accepts = cls.accepts
        self._exact = cls.accepts_exact

    def __repr__(self) -> str:
        return f"EntityRef({self._kind!r}, {self._key!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EntityRef) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)

    def _check(self, msg: object) -> None:
        check_accepts(self.name, self._accepts, self._exact, msg)

    async def tell(self, msg: M) -> None:
        """Hand ``msg`` to the router, which re-sends it until the entity has it; waits
        while the router holds as many unanswered messages as an outbox may."""
        if type(msg) not in self._exact:
            self._check(msg)
        router = self._node.router
        if router.full:
            await router.wait_for_room()
        router.call(self._kind, self._key, msg, ask=False,
                    timeout=self._node.config.entity_retry_for)

    def tell_nowait(self, msg: M) -> None:
        if type(msg) not in self._exact:
            self._check(msg)
        router = self._node.router
        if router.full:
            raise MailboxFull(self.name, type(msg).__name__, router.capacity)
        router.call(self._kind, self._key, msg, ask=False,
                    timeout=self._node.config.entity_retry_for)

    async def ask(self, msg: M, timeout: float = 5.0) -> object:
        if type(msg) not in self._exact:
            self._check(msg)
        reply = self._node.router.call(self._kind, self._key, msg, ask=True, timeout=timeout)
        assert reply is not None
        try:
            return await reply
        except asyncio.CancelledError:
            reply.cancel()
            raise

    @property
    def alive(self) -> bool:
        """Always True: an entity exists virtually and is activated on demand."""
        return True

    def statistics(self) -> ActorStatistics:
        raise ShardlineError(f"{self!r} is virtual; statistics are kept by its activation")

    def _add_watcher(self, watcher: _ActorCell) -> None:
        raise TypeError(f"{self!r} is an entity: it never stops for good, so it cannot be "
                        "watched")

    def _remove_watcher(self, watcher: _ActorCell) -> None:
        raise TypeError(f"{self!r} is an entity and cannot be watched")

    def _system_deliver(self, msg: object) -> None:
        self.tell_nowait(msg)  # type: ignore[arg-type]
