"""``ClusterNode``: one runtime's place in the cluster, and what ties the parts up.

A node listens on its transport (``_inbound`` handles what arrives) and
keeps one outbox, so one connection, per peer it sends to (``_outbox``); a
peer answers over its own connection back. It owns the membership
(``_membership``), the entities it hosts (``_entities``), the router that
sends to entities anywhere (``_routing``), remote watches (``_watches``)
and pending remote asks, and counts what crosses the wire.

Periodic work, every ``lease_ttl / 3`` on the runtime clock: renew the node
lease, re-read the membership, renew entity leases and passivate idle
entities. The router's re-sends run every ``retry_interval / 4``.
Answers to this node itself (an entity hosted here, asked from here) are
handed over in place, without encoding.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
from collections.abc import Coroutine, Iterator
from typing import TYPE_CHECKING, Any

import msgspec
import structlog

from runtime._actor import Actor
from runtime._background import BackgroundTasks
from runtime._errors import ShardlineError
from runtime._ref import _LocalRef
from runtime.cluster import _frames as f
from runtime.cluster._config import Cluster
from runtime.cluster._cuts import LinkCuts
from runtime.cluster._entities import EntityHost
from runtime.cluster._errors import ClusterError
from runtime.cluster._inbound import serve
from runtime.cluster._membership import Membership
from runtime.cluster._outbox import Outbox
from runtime.cluster._routing import EntityRouter
from runtime.cluster._simnet import register_network_faults
from runtime.cluster._stats import ClusterStatistics
from runtime.cluster._tcp import TcpTransport
from runtime.cluster._transport import Transport
from runtime.cluster._watches import RemoteWatches

if TYPE_CHECKING:
    from runtime._system import Runtime
    from runtime.store import Store

_log = structlog.get_logger("shardline")


def _resolve_if_pending(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class ClusterNode:
    def __init__(self, rt: Runtime, config: Cluster, store: Store) -> None:
        self.rt = rt
        self.config = config
        self.store = store
        # names and incarnations: seeded under simulation (replay), random otherwise
        draw = rt.random.getrandbits if rt.simulated else secrets.randbits
        self.name = config.name or f"node-{draw(40):010x}"
        self.owner = f"{self.name}/{draw(32):08x}"
        """This incarnation's identity as a lease owner (see ``_membership``)."""
        self.address = ""
        self.transport: Transport = (
            config.network.transport(config.secret, config.max_frame, self)
            if config.network is not None else TcpTransport(config.secret, config.max_frame))
        if config.network is not None:
            register_network_faults(rt.faults, config.network)
        self.membership = Membership(self)
        self.host = EntityHost(self)
        self.router = EntityRouter(self)
        self.outboxes: dict[str, Outbox] = {}
        self.hints: dict[str, str] = {}
        """Addresses peers announced in their ``Hello`` (before membership lists them)."""
        self._replies: dict[int, tuple[asyncio.Future[object], str, asyncio.TimerHandle]] = {}
        self.watches = RemoteWatches(self)
        self.cuts = LinkCuts()
        self._tasks = BackgroundTasks(on_failure=self._task_failed)
        self._ids = 0
        self._paused_until = 0.0
        self.killed = False
        self.messages_in = self.messages_out = self.bytes_in = self.bytes_out = 0
        self.frames_in = self.frames_out = self.reconnects = self.malformed = 0

    # -- lifecycle -----------------------------------------------------------
    async def start(self) -> None:
        self.address = await self.transport.listen(self.config.listen,
                                                   functools.partial(serve, self))
        await self.membership.join()
        await self.watches.start()
        self.spawn_task(self._periodic())
        self.spawn_task(self._retrying())
        self.event("node.started", self.name, self.address)

    async def leave(self) -> None:
        """Graceful exit: hand entities over, deregister, close connections."""
        if self.killed:
            return
        await self.host.leave()
        for outbox in list(self.outboxes.values()):  # let queued replies go out
            for _ in range(100):
                if not outbox.items or outbox.link is None:
                    break
                await asyncio.sleep(0.001)
        await self.membership.leave()
        await self._close()
        self.event("node.stopped", self.name)

    async def _close(self) -> None:
        for outbox in list(self.outboxes.values()):
            await outbox.close()
        self.outboxes.clear()
        await self.transport.close()
        await self._tasks.cancel_and_wait()

    def kill(self) -> None:
        """Simulated SIGKILL: stop everything now, release nothing."""
        self.killed = True
        self.event("node.killed", self.name)
        self.spawn_task(self._die(), detached=True)

    async def _die(self) -> None:
        await self._close()
        await self.rt.shutdown()

    def pause(self, seconds: float) -> None:
        """Simulated stop-the-world pause: no handling, renewal or sending for ``seconds``."""
        from runtime._faults import Fault

        loop = asyncio.get_running_loop()
        self._paused_until = max(self._paused_until, loop.time() + seconds)
        for cell in list(self.rt._registry.values()):
            cell.arm(Fault(kind="pause", at=0.0, duration=seconds))

    async def unpaused(self) -> None:
        """Return once a simulated pause is over (at once when there is none)."""
        loop = asyncio.get_running_loop()
        while loop.time() < self._paused_until:
            # wait for the exact instant: a relative sleep can round short of it forever
            resumed = loop.create_future()
            loop.call_at(self._paused_until, _resolve_if_pending, resumed)
            await resumed

    def spawn_task(self, coro: Coroutine[Any, Any, Any], *,
                   detached: bool = False) -> asyncio.Task[Any]:
        """Run ``coro`` as a task of this node: cancelled when the node closes, and
        logged (``cluster.task_failed``) if it fails; ``detached`` outlives the close."""
        if detached:
            return asyncio.get_running_loop().create_task(coro)
        return self._tasks.spawn(coro)

    def _task_failed(self, exc: BaseException) -> None:
        _log.error("cluster.task_failed", node=self.name, exc_info=exc)

    async def _periodic(self) -> None:
        interval = self.config.lease_ttl / 3
        while True:
            await asyncio.sleep(interval)
            await self.unpaused()
            try:
                await self.membership.renew()
                await self.membership.refresh()
                if not self.membership.lost:
                    await self.host.renew()
            except Exception as exc:  # the next round tries again; a TTL covers a miss
                _log.error("node.periodic_failed", node=self.name, exc_info=exc)

    async def _retrying(self) -> None:
        while True:
            await asyncio.sleep(self.config.retry_interval / 4)
            await self.unpaused()
            try:
                self.router.tick()
            except Exception as exc:
                _log.error("node.retry_failed", node=self.name, exc_info=exc)

    # -- events and statistics -----------------------------------------------
    def event(self, kind: str, subject: str, detail: str = "") -> None:
        self.rt._lifecycle(kind, subject, detail)
        _log.info(kind, node=self.name, subject=subject, detail=detail)

    def counted_out(self, items: int, size: int) -> None:
        self.messages_out += items
        self.bytes_out += size
        self.frames_out += 1

    def statistics(self) -> ClusterStatistics:
        return ClusterStatistics(
            node=self.name, address=self.address, live_nodes=len(self.membership.live),
            messages_in=self.messages_in, messages_out=self.messages_out,
            bytes_in=self.bytes_in, bytes_out=self.bytes_out, frames_in=self.frames_in,
            frames_out=self.frames_out, reconnects=self.reconnects,
            connections_refused=self.transport.refused, malformed_frames=self.malformed,
            activations=self.host.activations, passivations=self.host.passivations,
            entities_active=len(self.host.active))

    # -- sending -------------------------------------------------------------
    def next_id(self) -> int:
        self._ids += 1
        return self._ids

    def outbox(self, peer: str) -> Outbox:
        """The outbox to ``peer``, opened on first use.

        Even to a peer this node believes dead: a node whose renewal was late
        may still be talking to us, and its answers must not be dropped; an
        outbox to a dead peer that cannot connect closes itself (``_outbox``).
        """
        outbox = self.outboxes.get(peer)
        if outbox is None:
            if self.killed:
                raise ClusterError(f"node {self.name!r} is down")
            outbox = self.outboxes[peer] = Outbox(self, peer)
        return outbox

    def hinted_address(self, peer: str) -> str | None:
        return self.hints.get(peer)

    def frames_of(self, items: list[Any]) -> Iterator[tuple[int, bytes]]:
        """Frames for ``items``: one if it fits, else split; an item that cannot be
        encoded or is too large alone is dropped (its ask fails)."""
        try:
            frame = f.encode_frame(items)
        except (TypeError, ValueError, OverflowError):
            frame = None
        if frame is not None and len(frame) <= self.config.max_frame:
            yield len(items), frame
            return
        if len(items) > 1:
            half = len(items) // 2
            yield from self.frames_of(items[:half])
            yield from self.frames_of(items[half:])
            return
        self._unsendable(items[0])

    def _unsendable(self, item: Any) -> None:
        why = f"{type(getattr(item, 'msg', item)).__name__} cannot be sent: it does not " \
              f"encode to MessagePack within {self.config.max_frame} bytes"
        _log.error("message.unsendable", node=self.name, item=type(item).__name__, error=why)
        error = ShardlineError(why)
        if isinstance(item, f.AskOut):
            self.resolve(item.id, None, error)
        elif isinstance(item, f.CallOut):
            self.router.on_result(item.id, None, error)
        elif isinstance(item, f.ReplyOut):
            pass

    def post(self, peer: str, item: object) -> None:
        """Queue a protocol item for ``peer`` (this node itself: handled in place)."""
        if peer == self.name:
            self._local(item)
        else:
            self.outbox(peer).put(item)

    def _local(self, item: object) -> None:
        if isinstance(item, f.CallOut):
            self.host.accept(self.name, item.id, item.kind, item.key, item.msg, item.ask)
        else:
            raise AssertionError(f"unexpected local item {item!r}")

    # answers from the host (to this node itself without encoding)
    def ack(self, peer: str, call_id: int) -> None:
        if peer == self.name:
            self.router.on_ack(call_id)
        else:
            self.post(peer, f.Ack(call_id))

    def not_here(self, peer: str, call_id: int, owner: str) -> None:
        if peer == self.name:
            self.router.on_not_here(call_id, owner)
        else:
            self.post(peer, f.NotHere(call_id, owner))

    def fail(self, peer: str, call_id: int, error: BaseException) -> None:
        if peer == self.name:
            self.router.on_result(call_id, None, error)
        else:
            self.post(peer, f.failure_of(call_id, error))

    def answer(self, peer: str, call_id: int, reply: asyncio.Future[object]) -> None:
        if reply.cancelled():
            return
        error = reply.exception()
        if peer == self.name:
            self.router.on_result(call_id, None if error else reply.result(), error)
        elif error is not None:
            self.post(peer, f.failure_of(call_id, error))
        else:
            try:
                value = msgspec.Raw(msgspec.msgpack.encode(reply.result()))
            except (TypeError, ValueError, OverflowError) as exc:
                self.post(peer, f.Failure(call_id, "runtime._errors", "ShardlineError",
                                          f"the reply cannot be encoded: {exc}"))
            else:
                self.post(peer, f.ReplyOut(call_id, value))

    # -- remote asks and watches ---------------------------------------------
    def expect_reply(self, peer: str, actor: str, message_type: str,
                     timeout: float) -> tuple[int, asyncio.Future[object]]:
        from runtime._errors import AskTimeout

        loop = asyncio.get_running_loop()
        call_id = self.next_id()
        reply: asyncio.Future[object] = loop.create_future()
        error = AskTimeout(actor, message_type, timeout, node=peer)
        timer = loop.call_later(timeout, self.resolve, call_id, None, error)
        self._replies[call_id] = (reply, peer, timer)
        return call_id, reply

    def forget_reply(self, call_id: int) -> None:
        entry = self._replies.pop(call_id, None)
        if entry is not None:
            entry[2].cancel()

    def has_reply(self, call_id: int) -> bool:
        return call_id in self._replies

    def resolve(self, call_id: int, value: object, error: BaseException | None) -> None:
        """Answer a pending remote ask (``expect_reply``)."""
        entry = self._replies.pop(call_id, None)
        if entry is None:
            return
        reply, _, timer = entry
        timer.cancel()
        if not reply.done():
            if error is not None:
                reply.set_exception(error)
            else:
                reply.set_result(value)

    def on_node_joined(self, peer: str) -> None:
        self.watches.node_joined(peer)

    def on_node_dead(self, peer: str, reason: str = "node_down") -> None:
        self.watches.node_dead(peer, reason)
        outbox = self.outboxes.pop(peer, None)
        if outbox is not None:
            self.spawn_task(outbox.close())
        self.router.on_peer_lost(peer)

    # -- the public face (Runtime delegates here) ----------------------------
    def remote(self, peer: str, actor: str, cls: type[Actor[Any]]) -> Any:
        from runtime.cluster._refs import RemoteRef

        if peer == self.name:
            cell = self.rt._registry.get(actor)
            if cell is None:
                raise ClusterError(f"no actor {actor!r} on this node ({self.name!r})")
            ref: _LocalRef[Any] = cell.ref
            return ref
        return RemoteRef(self, peer, actor, cls)

