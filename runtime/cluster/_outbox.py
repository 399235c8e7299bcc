"""What waits for one peer, and the task that sends it in frames.

Everything this node sends to one peer goes through one outbox and one
connection, in order: that is how per-sender order is kept. The sender
task takes whatever is queued (up to ``batch`` items) and writes it as one
frame, so a burst of tells costs a few frames, not one each. When the
connection fails, what was in flight is lost (at most once), the failure
is logged and counted, and the task reconnects with backoff; the peer's
address is looked up again on every attempt. Items queued meanwhile wait.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any

import structlog

from runtime.cluster._errors import LinkClosed
from runtime.cluster._frames import Hello, encode_frame
from runtime.cluster._transport import Link

if TYPE_CHECKING:
    from runtime.cluster._node import ClusterNode

_log = structlog.get_logger("shardline")


class Outbox:
    def __init__(self, node: ClusterNode, peer: str) -> None:
        self.node = node
        self.peer = peer
        self.capacity = node.config.outbox_capacity
        self.items: list[Any] = []
        self.link: Link | None = None
        self.ever_connected = False
        self.attempt = 0
        self.generation = node.next_id()
        """Changes whenever queued items may have been lost (a new outbox, a failed send)."""
        self._wakeup: asyncio.Future[None] | None = None
        self._room: deque[asyncio.Future[None]] = deque()
        self.task = node.spawn_task(self._run())

    @property
    def full(self) -> bool:
        return len(self.items) >= self.capacity

    def put(self, item: object) -> None:
        self.items.append(item)
        if self._wakeup is not None:
            wakeup, self._wakeup = self._wakeup, None
            if not wakeup.done():
                wakeup.set_result(None)

    async def wait_for_room(self) -> None:
        while self.full:
            waiter = asyncio.get_running_loop().create_future()
            self._room.append(waiter)
            await waiter

    def _wake_senders(self) -> None:
        while self._room and not self.full:
            waiter = self._room.popleft()
            if not waiter.done():
                waiter.set_result(None)

    async def _run(self) -> None:
        node = self.node
        batch = node.config.batch
        while True:
            if not self.items:
                self._wakeup = asyncio.get_running_loop().create_future()
                await self._wakeup
                continue
            await node.unpaused()
            if node.cuts.is_cut(self.peer):  # a partition: what is queued is lost
                self._drop_cut()
                continue
            link = self.link or await self._connect()
            if link is None:
                continue
            items = self.items[:batch]
            del self.items[:batch]
            self._wake_senders()
            try:
                for count, frame in node.frames_of(items):
                    await link.send(frame)
                    node.counted_out(count, len(frame))
            except LinkClosed as exc:
                self._lost(str(exc))
            except Exception as exc:  # a bug must cost these items, not every later one
                _log.error("connection.sender_failed", node=node.name, peer=self.peer,
                           exc_info=exc)
                self._lost(f"sender failed: {type(exc).__name__}")

    async def _connect(self) -> Link | None:
        node = self.node
        address = node.membership.address_of(self.peer) or node.hinted_address(self.peer)
        if address is None:  # a node that joined since the last refresh
            await node.membership.refresh()
            address = node.membership.address_of(self.peer)
        try:
            if address is None:
                raise LinkClosed(f"no known address for node {self.peer!r}")
            link = await node.transport.connect(address)
            await link.send(encode_frame([Hello(node.name, node.address)]))
        except LinkClosed as exc:
            if self.peer in node.watches.dead_nodes:  # it really is gone: stop trying
                self._give_up(str(exc))
                return None
            self.attempt += 1
            delay = node.config.reconnect.delay(self.attempt - 1, node.rt.random.random())
            _log.info("connection.retry", node=node.name, peer=self.peer, error=str(exc),
                      delay=round(delay, 4))
            node.router.on_peer_lost(self.peer)
            await asyncio.sleep(delay)
            return None
        if self.ever_connected:
            node.reconnects += 1
        self.ever_connected = True
        self.attempt = 0
        self.link = link
        node.event("connection.up", self.peer, "outbound")
        return link

    def _drop_cut(self) -> None:
        node = self.node
        node.cuts.dropped += len(self.items)
        self.items.clear()
        self._wake_senders()
        if self.link is not None:
            self._lost("partitioned")

    def _give_up(self, why: str) -> None:
        node = self.node
        _log.info("connection.abandoned", node=node.name, peer=self.peer, error=why,
                  dropped=len(self.items))
        self.items.clear()
        self._wake_senders()
        if node.outboxes.get(self.peer) is self:
            del node.outboxes[self.peer]
        self.task.cancel()

    def _lost(self, why: str) -> None:
        self.generation = self.node.next_id()
        if self.link is not None:
            self.node.spawn_task(self.link.close())
        self.link = None
        self.node.event("connection.down", self.peer, why)
        self.node.router.on_peer_lost(self.peer)

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.wait({self.task})
        if self.link is not None:
            await self.link.close()
            self.link = None
