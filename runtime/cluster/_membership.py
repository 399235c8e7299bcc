"""Membership through the store, and placement by rendezvous hashing.

Policy:

- Leases are owned by ``<node name>/<incarnation>``, a tag drawn at each
  start, so a second process started under a live node's name is refused
  rather than taken for a renewal of the first one's lease.
- A node writes its record (name, address, entity kinds it hosts) under
  ``cluster/nodes/<name>`` and holds the lease ``cluster/node/<name>``,
  renewed every ``lease_ttl / 3``. Joining under a name whose lease another
  live node holds is refused.
- A node is *live* while its lease is held. One whose lease expired is
  *dead* (its record stays); one that released its lease and deleted its
  record on the way out has *left*. Every node re-reads the membership at
  each renewal and reports joined / left / dead nodes as events.
- A node that could not renew for a whole TTL, or whose renewal came back
  with a new token (the lease expired in between, e.g. after a pause), has
  lost its membership: the others may already run its entities, so it
  stops them before going on under the new grant.
- An entity goes to the live node, among those hosting its kind, with the
  highest ``blake2b(kind/key@node)``: a node joining takes over only the
  keys it now wins, a node leaving hands over only its own.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import msgspec
import structlog

from runtime._errors import StoreError
from runtime.cluster._errors import ClusterError
from runtime.store import Delete, Put

if TYPE_CHECKING:
    from runtime.cluster._node import ClusterNode

_log = structlog.get_logger("shardline")
LEASES = "cluster/node/"
RECORDS = "cluster/nodes/"


class NodeRecord(msgspec.Struct, frozen=True):
    name: str
    address: str
    kinds: list[str]


_record_decoder = msgspec.msgpack.Decoder(NodeRecord)


def owner_node(owner: str) -> str:
    """The node name in a lease owner ``<node>/<incarnation>``."""
    return owner.split("/", 1)[0]


def rendezvous(kind: str, key: str, candidates: list[str]) -> str | None:
    """The winner among ``candidates`` for ``kind/key`` (None if there are none)."""
    best: tuple[bytes, str] | None = None
    for node in candidates:
        score = hashlib.blake2b(f"{kind}/{key}@{node}".encode(), digest_size=8).digest()
        if best is None or (score, node) > best:
            best = (score, node)
    return best[1] if best is not None else None


class Membership:
    """This node's registration and its view of the live nodes."""

    def __init__(self, node: ClusterNode) -> None:
        self.node = node
        self.live: dict[str, NodeRecord] = {}
        self.kinds: list[str] = []
        self.token = 0
        self.renewed_at = 0.0
        self.lost = False
        self._record_dirty = False

    @property
    def lease_key(self) -> str:
        return LEASES + self.node.name

    def record(self) -> NodeRecord:
        return NodeRecord(self.node.name, self.node.address, list(self.kinds))

    async def join(self) -> None:
        node = self.node
        lease = await node.store.acquire(self.lease_key, node.owner, node.config.lease_ttl)
        if lease is None:
            raise ClusterError(f"node name {node.name!r} is taken by a live node")
        await node.store.write([Put(RECORDS + node.name, msgspec.msgpack.encode(self.record()))])
        self.token = lease.token
        self.renewed_at = node.rt.now()
        await self.refresh()

    async def leave(self) -> None:
        node = self.node
        try:
            await node.store.write([Delete(RECORDS + node.name)])
            await node.store.release(self.lease_key, node.owner, self.token)
        except StoreError as exc:
            _log.warning("node.leave_incomplete", node=node.name, error=str(exc))

    def add_kind(self, kind: str) -> None:
        """Host ``kind`` from now on; the record is rewritten at once (in the background)."""
        if kind not in self.kinds:
            self.kinds.append(kind)
            self._record_dirty = True
            self.node.spawn_task(self.publish())

    async def publish(self) -> None:
        """Write this node's record if it changed since it was last written."""
        if not self._record_dirty or self.lost:
            return
        self._record_dirty = False
        node = self.node
        try:
            await node.store.write([Put(RECORDS + node.name,
                                        msgspec.msgpack.encode(self.record()))])
        except StoreError:
            self._record_dirty = True

    async def renew(self) -> None:
        """Renew this node's lease; on loss, stop its entities (see the policy)."""
        node = self.node
        now = node.rt.now()
        try:
            lease = await node.store.acquire(self.lease_key, node.owner, node.config.lease_ttl)
        except StoreError:
            lease = None
        if lease is None:
            if not self.lost and now - self.renewed_at >= node.config.lease_ttl:
                self._lose("renewal failed for a whole lease TTL")
            return
        if lease.token != self.token:
            if not self.lost:
                self._lose("the lease expired before it was renewed")
            self._record_dirty = True
        if self.lost:
            self.lost = False
            node.event("node.rejoined", node.name)
        self.token = lease.token
        self.renewed_at = now
        await self.publish()

    def _lose(self, why: str) -> None:
        self.lost = True
        self.node.event("node.lease_lost", self.node.name, why)
        self.node.host.stop_all(release=False, reason="node_lease_lost")

    async def refresh(self) -> None:
        """Re-read who is live; report joined, left and dead nodes."""
        node = self.node
        try:
            leases = await node.store.leases(LEASES)
            records = await node.store.scan(RECORDS)
        except StoreError:
            return
        holders = {owner_node(lease.owner): None for lease in leases}
        recorded = {key[len(RECORDS):]: _record_decoder.decode(v.value) for key, v in records}
        live: dict[str, NodeRecord] = {}
        for name in sorted(holders):
            if name == node.name:
                if not self.lost:
                    live[name] = self.record()
            elif name in recorded:
                live[name] = recorded[name]
        before = self.live
        self.live = live
        for name in live:
            if name not in before and name != node.name:
                node.event("node.joined", name, live[name].address)
                node.on_node_joined(name)
        for name in before:
            if name not in live and name != node.name:
                if name in recorded:
                    node.event("node.dead", name)
                    node.on_node_dead(name)
                else:
                    node.event("node.left", name)
                    node.on_node_dead(name, reason="node_left")
        if before.keys() != live.keys() or any(before[n].kinds != live[n].kinds for n in live
                                               if n in before):
            node.host.rebalance()

    def address_of(self, name: str) -> str | None:
        record = self.live.get(name)
        return record.address if record is not None else None

    def is_live(self, name: str) -> bool:
        return name in self.live

    def place(self, kind: str, key: str) -> str | None:
        """The node that should run entity ``kind/key`` in this node's view."""
        candidates = [name for name, record in self.live.items() if kind in record.kinds]
        return rendezvous(kind, key, candidates)
