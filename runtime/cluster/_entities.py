"""Hosting entities: activation under a lease, renewal, passivation, hand-over.

Policy:

- An entity ``kind/key`` is activated by the first message that reaches a
  node hosting ``kind``: the node acquires the lease ``entity/<kind>/<key>``
  and only then spawns the actor, whose ``self.fence`` is that lease's
  ``Fence``. ``recover`` runs before any message (``spawn`` returns after
  it); messages arriving meanwhile wait, in arrival order.
- If another node holds the lease, the message is answered ``NotHere``
  naming the holder, and the sender's node re-sends it there.
- The lease is renewed every ``lease_ttl / 3``. A renewal that fails, or
  comes back with a different token (it expired in between), stops the
  activation without touching the store again: another node may already
  run it, and its writes under the old fence would be refused anyway.
- An activation idle for ``passivate_after`` is stopped and its lease
  released; so is one whose key now belongs to another node (a node
  joined): ``entity.moved``. A message that arrives while an activation
  stops waits and activates it again afterwards.
- A message is acknowledged to its sender once it is in the activation's
  mailbox; an ask's reply follows when ``receive`` returns.
- An activation whose ``recover`` raised does not start: an ask waiting for
  it gets the error, a tell is answered ``NotHere`` and re-sent later.
- An activation whose handler raised ends there (it is not restarted by a
  supervisor, so a stale activation whose writes are refused cannot
  escalate into a node failure): the asker gets the error, and the next
  message activates the entity again, ``recover`` first.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import structlog

from runtime._actor import Actor
from runtime._errors import ActorStopped, ShardlineError, StoreError
from runtime._ref import _LocalRef
from runtime.cluster._membership import owner_node
from runtime.store import Fence

if TYPE_CHECKING:
    from runtime.cluster._node import ClusterNode

_log = structlog.get_logger("shardline")

Pending = tuple[str, int, object, bool]
"""A message waiting for its activation: (sender node, call id, message, is an ask)."""


def lease_key(kind: str, key: str) -> str:
    return f"entity/{kind}/{key}"


class Activation:
    """One activation of one entity on this node."""

    __slots__ = ("fence", "key", "kind", "last_used", "name", "pending", "ref", "renewed_at",
                 "state")

    def __init__(self, kind: str, key: str, now: float) -> None:
        self.kind = kind
        self.key = key
        self.name = f"{kind}/{key}"
        self.state = "activating"
        self.fence: Fence | None = None
        self.ref: _LocalRef[Any] | None = None
        self.pending: list[Pending] = []
        self.last_used = now
        self.renewed_at = now


class EntityHost:
    """The entities this node hosts; see the module docstring."""

    def __init__(self, node: ClusterNode) -> None:
        self.node = node
        self.kinds: dict[str, type[Actor[Any]]] = {}
        self.active: dict[str, Activation] = {}
        self.activations = 0
        self.passivations = 0

    def register(self, cls: type[Actor[Any]]) -> str:
        if not (isinstance(cls, type) and issubclass(cls, Actor)):
            raise TypeError(f"register_entity needs an Actor subclass, got {cls!r}")
        kind = cls.__name__
        known = self.kinds.get(kind)
        if known is not None and known is not cls:
            raise ValueError(f"entity kind {kind!r} is already registered for {known!r}")
        self.kinds[kind] = cls
        return kind

    def identity(self, actor_name: str) -> Activation | None:
        act = self.active.get(actor_name)
        return act if act is not None and act.fence is not None else None

    # -- messages ------------------------------------------------------------
    def accept(self, sender: str, call_id: int, kind: str, key: str, msg: object,
               ask: bool) -> None:
        node = self.node
        if kind not in self.kinds:
            node.not_here(sender, call_id, "")
            return
        name = f"{kind}/{key}"
        act = self.active.get(name)
        if act is None:
            act = Activation(kind, key, node.rt.now())
            self.active[name] = act
            act.pending.append((sender, call_id, msg, ask))
            node.spawn_task(self._activate(act))
        elif act.state == "active":
            self._enqueue(act, sender, call_id, msg, ask)
        else:
            act.pending.append((sender, call_id, msg, ask))

    def _enqueue(self, act: Activation, sender: str, call_id: int, msg: object,
                 ask: bool) -> None:
        assert act.ref is not None
        node = self.node
        act.last_used = node.rt.now()
        reply: asyncio.Future[object] | None = None
        if ask:
            reply = asyncio.get_running_loop().create_future()
        try:
            act.ref._post(msg, reply)
        except ActorStopped:
            # it stopped itself: let the renewal retire it, and activate again after
            act.pending.append((sender, call_id, msg, ask))
            if act.state == "active":
                self._stop_soon(act, "stopped", release=True)
            return
        node.ack(sender, call_id)
        if reply is not None:
            reply.add_done_callback(lambda f: node.answer(sender, call_id, f))

    async def _activate(self, act: Activation) -> None:
        node = self.node
        key = lease_key(act.kind, act.key)
        try:
            lease = await node.store.acquire(key, node.owner, node.config.lease_ttl)
            holder = None if lease is not None else await node.store.lease(key)
        except StoreError:
            lease, holder = None, None
        if lease is None:
            del self.active[act.name]
            owner = owner_node(holder.owner) if holder is not None else ""
            owner = "" if owner == node.name else owner
            for sender, call_id, _msg, _ask in act.pending:
                node.not_here(sender, call_id, owner)
            return
        act.fence = Fence(key, lease.token)
        act.renewed_at = node.rt.now()
        try:
            ref = await node.rt.spawn(self.kinds[act.kind], name=act.name, restart="temporary")
        except Exception as exc:
            del self.active[act.name]
            node.event("entity.activation_failed", act.name, f"{type(exc).__name__}: {exc}")
            await self._release(act)
            for sender, call_id, _msg, ask in act.pending:
                if ask:  # the asker learns why
                    node.fail(sender, call_id, exc)
                else:  # the sender's node tries again (recover may fail only for a while)
                    node.not_here(sender, call_id, "")
            return
        assert isinstance(ref, _LocalRef)
        act.ref = ref
        act.state = "active"
        self.activations += 1
        node.event("entity.activated", act.name, f"token {lease.token}")
        pending, act.pending = act.pending, []
        for sender, call_id, msg, ask in pending:
            self._enqueue(act, sender, call_id, msg, ask)

    # -- lifecycle -----------------------------------------------------------
    async def renew(self) -> None:
        """Renew every activation's lease; stop the lost and the idle ones."""
        node = self.node
        ttl = node.config.lease_ttl
        idle = node.config.passivate_after
        for act in list(self.active.values()):
            if act.state != "active" or act.fence is None:
                continue
            now = node.rt.now()
            try:
                lease = await node.store.acquire(act.fence.lease_key, node.owner, ttl)
            except StoreError:
                if now - act.renewed_at >= ttl:
                    self._stop_soon(act, "lease_lost", release=False)
                continue
            if lease is None or lease.token != act.fence.token:
                if lease is not None:
                    with contextlib.suppress(StoreError):  # it expires anyway
                        await node.store.release(lease.key, node.owner, lease.token)
                self._stop_soon(act, "lease_lost", release=False)
                continue
            act.renewed_at = now
            if act.ref is not None and not act.ref.alive:
                self._stop_soon(act, "stopped", release=True)
            elif idle is not None and now - act.last_used >= idle \
                    and act.ref is not None and not len(act.ref._cell.mailbox):
                self._stop_soon(act, "passivated", release=True)

    def rebalance(self) -> None:
        """Hand over the activations whose key another live node now wins."""
        node = self.node
        for act in list(self.active.values()):
            if act.state == "active" and node.membership.place(act.kind, act.key) not in (
                    None, node.name):
                self._stop_soon(act, "moved", release=True)

    def stop_all(self, *, release: bool, reason: str) -> None:
        for act in list(self.active.values()):
            if act.state == "active":
                self._stop_soon(act, reason, release=release)

    def _stop_soon(self, act: Activation, reason: str, *, release: bool) -> None:
        """Stop an active activation; the first decision wins (it is no longer active)."""
        if act.state == "active":
            act.state = "stopping"
            self.node.spawn_task(self._stop(act, reason, release=release))

    async def _stop(self, act: Activation, reason: str, *, release: bool) -> None:
        node = self.node
        if act.ref is not None and act.ref.alive:
            await node.rt.stop(act.ref)
        if release:
            await self._release(act)
        if self.active.get(act.name) is act:
            del self.active[act.name]
        if reason == "passivated":
            self.passivations += 1
        event = {"passivated": "entity.passivated", "moved": "entity.moved"}.get(
            reason, "entity.stopped")
        node.event(event, act.name, reason)
        owner = node.membership.place(act.kind, act.key) if reason == "moved" else None
        for sender, call_id, msg, ask in act.pending:  # arrived while stopping
            if owner is not None and owner != node.name:
                node.not_here(sender, call_id, owner)
            else:
                self.accept(sender, call_id, act.kind, act.key, msg, ask)

    async def _release(self, act: Activation) -> None:
        if act.fence is None:
            return
        try:
            await self.node.store.release(act.fence.lease_key, self.node.owner,
                                             act.fence.token)
        except StoreError as exc:
            _log.warning("entity.release_failed", entity=act.name, error=str(exc))

    async def leave(self) -> None:
        """Stop every activation and release its lease (a graceful exit)."""
        for act in list(self.active.values()):
            if act.state == "active":
                act.state = "stopping"
                await self._stop(act, "stopped", release=True)


def entity_of(node: ClusterNode | None, actor_name: str) -> Activation:
    """The activation behind an entity actor (for ``Actor.entity_key`` and ``Actor.fence``)."""
    act = node.host.identity(actor_name) if node is not None else None
    if act is None:
        raise ShardlineError(f"actor {actor_name!r} is not an entity activation")
    return act
