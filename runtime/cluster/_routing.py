"""Sending to entities: placement, acknowledgement, re-sending until active again.

Policy (the sender's side of ``_entities``):

- A message to ``kind/key`` goes to the node that wins it in this node's
  view of the membership; that node acknowledges it once the activation
  has it, and an ask's reply follows.
- Until acknowledged, the message is re-sent every ``retry_interval``; at
  once (after a short backoff) when the target answers ``NotHere`` (to the
  holder it names, if live), when the connection to it fails, or when it is
  declared dead. An acknowledged ask whose node dies before replying is
  re-sent too. So an entity message is delivered *at least once* while it
  is retried (an entity deduplicates, e.g. by a message id), and the
  effects are exactly once because the entity writes idempotently under
  its fence.
- A ``tell`` is retried for at most ``entity_retry_for`` seconds, then it
  is a dead letter; an ``ask`` until its timeout, then ``AskTimeout``
  names the entity, the message type, the timeout and the node last tried.
- Per-sender order holds while the entity stays where it is, and re-sent
  messages go again together, in the order they were first sent (a late
  acknowledgement can still let a re-sent copy arrive after a newer one).
- Backpressure: while ``outbox_capacity`` entity messages from this node
  are unanswered, ``tell`` waits and ``tell_nowait`` raises ``MailboxFull``.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from typing import TYPE_CHECKING

from runtime._errors import AskTimeout
from runtime.cluster._frames import CallOut

if TYPE_CHECKING:
    from runtime.cluster._node import ClusterNode

_FIRST_RETRY = 0.02


class _Call:
    __slots__ = ("ask", "attempts", "deadline", "future", "id", "key", "kind", "msg",
                 "posted", "retry_at", "target", "timeout", "timer")

    def __init__(self, call_id: int, kind: str, key: str, msg: object, ask: bool,
                 timeout: float, deadline: float) -> None:
        self.id = call_id
        self.kind = kind
        self.key = key
        self.msg = msg
        self.ask = ask
        self.timeout = timeout
        self.deadline = deadline
        self.future: asyncio.Future[object] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.target: str | None = None
        self.retry_at = 0.0
        self.attempts = 0
        self.posted: tuple[str, int] | None = None
        """(node, outbox generation) of the last copy queued, to queue no second copy
        behind a connection that is down: the first one is still waiting there."""


class EntityRouter:
    def __init__(self, node: ClusterNode) -> None:
        self.node = node
        self.calls: dict[int, _Call] = {}
        self.by_entity: dict[tuple[str, str], dict[int, None]] = {}
        """The ids of ``calls`` per entity, in the order they were made."""
        self.capacity = node.config.outbox_capacity
        self._room: deque[asyncio.Future[None]] = deque()

    @property
    def full(self) -> bool:
        """As many entity messages are unanswered as one outbox may hold: ``tell`` waits,
        ``tell_nowait`` raises ``MailboxFull`` (backpressure, as for a local mailbox)."""
        return len(self.calls) >= self.capacity

    async def wait_for_room(self) -> None:
        while self.full:
            waiter = asyncio.get_running_loop().create_future()
            self._room.append(waiter)
            await waiter

    def _forget(self, call_id: int) -> _Call | None:
        c = self.calls.pop(call_id, None)
        if c is not None:
            ids = self.by_entity[(c.kind, c.key)]
            del ids[call_id]
            if not ids:
                del self.by_entity[(c.kind, c.key)]
        while self._room and not self.full:
            waiter = self._room.popleft()
            if not waiter.done():
                waiter.set_result(None)
        return c

    def call(self, kind: str, key: str, msg: object, *, ask: bool,
             timeout: float) -> asyncio.Future[object] | None:
        node = self.node
        loop = asyncio.get_running_loop()
        c = _Call(node.next_id(), kind, key, msg, ask, timeout, loop.time() + timeout)
        self.calls[c.id] = c
        self.by_entity.setdefault((kind, key), {})[c.id] = None
        if ask:
            c.future = loop.create_future()
            c.timer = loop.call_at(c.deadline, self._expire, c.id)
        self._send(c, None)
        return c.future

    def _send(self, c: _Call, target: str | None) -> None:
        node = self.node
        c.attempts += 1
        c.target = target or node.membership.place(c.kind, c.key)
        c.retry_at = asyncio.get_running_loop().time() + node.config.retry_interval
        if c.target is None:
            return
        outbox = node.outboxes.get(c.target)
        if outbox is not None and outbox.link is None \
                and c.posted == (c.target, outbox.generation):
            return  # still queued behind the reconnect
        node.post(c.target, CallOut(c.id, c.kind, c.key, c.msg, c.ask))
        outbox = node.outboxes.get(c.target)
        c.posted = (c.target, outbox.generation) if outbox is not None else None

    def _soon(self, c: _Call) -> None:
        """Re-send after a short backoff that grows with the attempts, together with
        every other unacknowledged message to the same entity, so the next tick sends
        them again in the order they were first sent."""
        delay = min(self.node.config.retry_interval, _FIRST_RETRY * 2.0 ** min(c.attempts, 10))
        at = asyncio.get_running_loop().time() + delay
        for call_id in self.by_entity.get((c.kind, c.key), {}):
            other = self.calls[call_id]
            if other.retry_at != math.inf:  # not an acknowledged ask awaiting its reply
                other.retry_at = at

    # -- answers -------------------------------------------------------------
    def on_ack(self, call_id: int) -> None:
        c = self.calls.get(call_id)
        if c is None:
            return
        if c.ask:
            c.retry_at = math.inf
        else:
            self._forget(call_id)

    def on_result(self, call_id: int, value: object, error: BaseException | None) -> None:
        c = self._forget(call_id)
        if c is None or c.future is None:
            return
        if c.timer is not None:
            c.timer.cancel()
        if not c.future.done():
            if error is not None:
                c.future.set_exception(error)
            else:
                c.future.set_result(value)

    def on_not_here(self, call_id: int, owner: str) -> None:
        c = self.calls.get(call_id)
        if c is None:
            return
        node = self.node
        if owner and owner != c.target and node.membership.is_live(owner):
            self._send(c, owner)
        else:
            self._soon(c)

    def on_peer_lost(self, peer: str) -> None:
        """The link to ``peer`` failed or it died: what it had not answered goes again."""
        # one instant for all, so the next tick re-sends them in the order they were sent
        at = asyncio.get_running_loop().time() + _FIRST_RETRY
        for c in self.calls.values():
            if c.target == peer:
                c.retry_at = min(c.retry_at, at)

    # -- time ----------------------------------------------------------------
    def tick(self) -> None:
        now = asyncio.get_running_loop().time()
        for c in list(self.calls.values()):
            if c.future is not None and c.future.done():  # the asker gave up
                self.cancel(c.id)
            elif now >= c.deadline:
                if not c.ask:
                    self._forget(c.id)
                    self.node.event("entity.message_expired", f"{c.kind}/{c.key}",
                                    type(c.msg).__name__)
                    self.node.rt._dead_letter(f"{c.kind}/{c.key}", c.msg)
            elif now >= c.retry_at:
                self._send(c, None)

    def _expire(self, call_id: int) -> None:
        c = self._forget(call_id)
        if c is None or c.future is None or c.future.done():
            return
        c.future.set_exception(AskTimeout(f"{c.kind}/{c.key}", type(c.msg).__name__, c.timeout,
                                          node=c.target or "none"))

    def cancel(self, call_id: int) -> None:
        """Forget a call whose asker gave up."""
        c = self._forget(call_id)
        if c is not None and c.timer is not None:
            c.timer.cancel()
