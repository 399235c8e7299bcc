"""``ClusterNode``: one runtime's membership, connections, remote refs and entities.

A node listens on its transport and keeps one outbox (one connection) per
peer it sends to; a peer answers over its own connection back. Inbound,
each connection's frames are handled in order; a tell to a full mailbox
waits, which holds back that connection (backpressure reaches the sender
through its outbox). A malformed or oversized frame closes that connection
only, and is logged; the node goes on serving the others.

Periodic work, every ``lease_ttl / 3`` on the runtime clock: renew the node
lease, re-read the membership, renew entity leases and passivate idle
entities. The router's re-sends run every ``retry_interval / 4``.
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
from runtime._errors import ActorStopped, ShardlineError
from runtime._message import Terminated
from runtime._ref import _LocalRef
from runtime.cluster import _frames as f
from runtime.cluster._config import Cluster
from runtime.cluster._entities import EntityHost
from runtime.cluster._errors import ClusterError, FrameError, LinkClosed, UnknownMessageTag
from runtime.cluster._membership import Membership
from runtime.cluster._outbox import Outbox
from runtime.cluster._routing import EntityRouter
from runtime.cluster._simnet import register_network_faults
from runtime.cluster._stats import ClusterStatistics
from runtime.cluster._tcp import TcpTransport
from runtime.cluster._transport import Link, Transport

if TYPE_CHECKING:
    from runtime._cell import _ActorCell
    from runtime._system import Runtime
    from runtime.store import Store

_log = structlog.get_logger("shardline")
_NO_SUCH_ACTOR = ("runtime._system", "NoSuchActor")
_UNKNOWN_TAG = ("runtime.cluster._errors", "UnknownMessageTag")


def _resolve_if_pending(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _Watcher(Actor[Terminated]):
    """Forwards the stop of a local actor to the remote nodes watching it."""

    def __init__(self, node: ClusterNode) -> None:
        self.node = node

    async def receive(self, msg: Terminated) -> None:
        self.node.local_actor_down(msg.actor, msg.reason)


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
        self._hints: dict[str, str] = {}
        self._replies: dict[int, tuple[asyncio.Future[object], str, asyncio.TimerHandle]] = {}
        self._watching: dict[tuple[str, str], dict[_ActorCell, None]] = {}
        self._watched_by: dict[str, dict[str, None]] = {}
        self._down: dict[tuple[str, str], None] = {}
        self.dead_nodes: dict[str, None] = {}
        self._tasks: dict[asyncio.Task[Any], None] = {}
        self._ids = 0
        self._paused_until = 0.0
        self.killed = False
        self.messages_in = self.messages_out = self.bytes_in = self.bytes_out = 0
        self.frames_in = self.frames_out = self.reconnects = self.malformed = 0

    # -- lifecycle -----------------------------------------------------------
    async def start(self) -> None:
        self.address = await self.transport.listen(self.config.listen, self._serve)
        await self.membership.join()
        self._watcher = await self.rt.spawn(_Watcher, self, name=f"cluster.watcher.{self.name}")
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
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks))

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
        task = asyncio.get_running_loop().create_task(coro)
        if not detached:
            self._tasks[task] = None
            task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            _log.error("cluster.task_failed", node=self.name, exc_info=task.exception())

    async def _periodic(self) -> None:
        interval = self.config.lease_ttl / 3
        while True:
            await asyncio.sleep(interval)
            await self.unpaused()
            await self.membership.renew()
            await self.membership.refresh()
            if not self.membership.lost:
                await self.host.renew()

    async def _retrying(self) -> None:
        while True:
            await asyncio.sleep(self.config.retry_interval / 4)
            await self.unpaused()
            self.router.tick()

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
        outbox = self.outboxes.get(peer)
        if outbox is None:
            if self.killed:
                raise ClusterError(f"node {self.name!r} is down")
            outbox = self.outboxes[peer] = Outbox(self, peer)
        return outbox

    def hinted_address(self, peer: str) -> str | None:
        return self._hints.get(peer)

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
            self._resolve(item.id, None, error)
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
        timer = loop.call_later(timeout, self._resolve, call_id, None, error)
        self._replies[call_id] = (reply, peer, timer)
        return call_id, reply

    def forget_reply(self, call_id: int) -> None:
        entry = self._replies.pop(call_id, None)
        if entry is not None:
            entry[2].cancel()

    def _resolve(self, call_id: int, value: object, error: BaseException | None) -> None:
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

    def watch(self, peer: str, actor: str, watcher: _ActorCell) -> None:
        if (peer, actor) in self._down or peer in self.dead_nodes:
            watcher.system_deliver(Terminated(actor=actor, reason="node_down"))
            return
        watchers = self._watching.setdefault((peer, actor), {})
        if not watchers:
            self.post(peer, f.Watch(actor))
        watchers[watcher] = None

    def unwatch(self, peer: str, actor: str, watcher: _ActorCell) -> None:
        watchers = self._watching.get((peer, actor))
        if watchers is not None:
            watchers.pop(watcher, None)
            if not watchers:
                del self._watching[(peer, actor)]
                self.post(peer, f.Unwatch(actor))

    def remote_alive(self, peer: str, actor: str) -> bool:
        return (peer, actor) not in self._down and peer not in self.dead_nodes

    def _remote_down(self, peer: str, actor: str, reason: str) -> None:
        self._down[(peer, actor)] = None
        for cell in self._watching.pop((peer, actor), {}):
            cell.system_deliver(Terminated(actor=actor, reason=reason))

    def local_actor_down(self, actor: str, reason: str) -> None:
        for peer in self._watched_by.pop(actor, {}):
            self.post(peer, f.Down(actor, reason))

    def on_node_joined(self, peer: str) -> None:
        self.dead_nodes.pop(peer, None)
        for key in [k for k in self._down if k[0] == peer]:
            del self._down[key]

    def on_node_dead(self, peer: str, reason: str = "node_down") -> None:
        self.dead_nodes[peer] = None
        for watched_peer, actor in [k for k in self._watching if k[0] == peer]:
            self._remote_down(watched_peer, actor, reason)
        for watchers in self._watched_by.values():
            watchers.pop(peer, None)
        outbox = self.outboxes.pop(peer, None)
        if outbox is not None:
            self.spawn_task(outbox.close())
        self.router.on_peer_lost(peer)

    # -- receiving -----------------------------------------------------------
    async def _serve(self, link: Link) -> None:
        peer = link.peer
        try:
            hello = f.decode_frame(await link.receive())
            if not hello or not isinstance(hello[0], f.Hello):
                raise FrameError(f"first frame from {link.peer} is not a Hello")
            peer = hello[0].node
            self._hints[peer] = hello[0].address
            self.event("connection.up", peer, "inbound")
            while True:
                frame = await link.receive()
                self.frames_in += 1
                self.bytes_in += len(frame)
                items = f.decode_frame(frame)
                self.messages_in += len(items)
                await self.unpaused()
                for item in items:
                    await self._handle(peer, item)
        except (FrameError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.malformed += 1
            _log.warning("connection.bad_frame", node=self.name, peer=peer, error=str(exc))
            self.event("connection.down", peer, f"bad frame: {exc}")
        except LinkClosed as exc:
            self.event("connection.down", peer, str(exc))

    async def _handle(self, peer: str, item: Any) -> None:
        kind = type(item)
        if kind is f.TellIn:
            cell = self.rt._registry.get(item.actor)
            msg = self._decoded(peer, cell, item.actor, item.msg, None)
            if msg is not None and cell is not None:
                await cell.ref.tell(msg)
        elif kind is f.AskIn:
            cell = self.rt._registry.get(item.actor)
            msg = self._decoded(peer, cell, item.actor, item.msg, item.id)
            if msg is not None and cell is not None:
                reply: asyncio.Future[object] = asyncio.get_running_loop().create_future()
                try:
                    cell.ref._post(msg, reply)
                except ActorStopped as exc:
                    self.post(peer, f.failure_of(item.id, exc))
                    return
                reply.add_done_callback(functools.partial(self._answer_ask, peer, item.id))
        elif kind is f.CallIn:
            cls = self.host.kinds.get(item.kind)
            if cls is None:
                self.post(peer, f.NotHere(item.id, ""))
                return
            try:
                msg = f.message_decoder(cls.accepts).decode(item.msg)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                why = f.describe_undecodable(item.msg, cls.accepts, exc)
                self.post(peer, f.Failure(item.id, *_UNKNOWN_TAG,
                                          f"entity {item.kind}/{item.key} on node "
                                          f"{self.name!r}: {why}"))
                return
            self.host.accept(peer, item.id, item.kind, item.key, msg, item.ask)
        elif kind is f.Ack:
            self.router.on_ack(item.id)
        elif kind is f.ReplyIn:
            value = f.decode_value(item.value)
            if item.id in self._replies:
                self._resolve(item.id, value, None)
            else:
                self.router.on_result(item.id, value, None)
        elif kind is f.Failure:
            error = f.rebuild_error(item, peer)
            if item.id in self._replies:
                self._resolve(item.id, None, error)
            else:
                self.router.on_result(item.id, None, error)
        elif kind is f.NotHere:
            self.router.on_not_here(item.id, item.owner)
        elif kind is f.Rejected:
            self.rt._dead_letter(f"{item.actor}@{peer}", item)
            _log.warning("message.rejected", node=self.name, peer=peer, actor=item.actor,
                         error=item.text)
        elif kind is f.Watch:
            self._on_watch(peer, item.actor)
        elif kind is f.Unwatch:
            self._watched_by.get(item.actor, {}).pop(peer, None)
        elif kind is f.Down:
            self._remote_down(peer, item.actor, item.reason)
        else:  # a second Hello
            raise FrameError(f"unexpected {kind.__name__} from {peer}")

    def _answer_ask(self, peer: str, call_id: int, reply: asyncio.Future[object]) -> None:
        self.answer(peer, call_id, reply)

    def _decoded(self, peer: str, cell: _ActorCell | None, actor: str, raw: msgspec.Raw,
                 call_id: int | None) -> object | None:
        """The message for a local actor, or None after answering why it is refused."""
        if cell is None:
            why, error = f"no actor {actor!r} on node {self.name!r}", _NO_SUCH_ACTOR
        else:
            try:
                msg: object = f.message_decoder(cell.accepts).decode(raw)
                return msg
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                detail = f.describe_undecodable(raw, cell.accepts, exc)
                why, error = f"actor {actor!r} on node {self.name!r}: {detail}", _UNKNOWN_TAG
        if call_id is None:
            self.post(peer, f.Rejected(actor, why))
            self.rt._dead_letter(actor, raw)
        else:
            self.post(peer, f.Failure(call_id, *error, why))
        return None

    def _on_watch(self, peer: str, actor: str) -> None:
        cell = self.rt._registry.get(actor)
        if cell is None:
            self.post(peer, f.Down(actor, "no such actor"))
            return
        self._watched_by.setdefault(actor, {})[peer] = None
        cell.add_watcher(self._watcher._cell)  # type: ignore[attr-defined]

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


_ = UnknownMessageTag  # rebuilt at the asker by name (see _UNKNOWN_TAG)
