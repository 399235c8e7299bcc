"""One queue server's state: keys, their messages in order, what is out, dedup ids.

Pure logic, no I/O. The server *plans* a request (validates it against the
current state and returns the journal events it implies, changing nothing
that matters), writes the events durably, then *applies* them. Recovery
applies the journal's events the same way, so a restarted server ends in
exactly the state the journal describes.

Policy, kept here:

- Per key, messages are handed out in offset order (enqueue order) and at
  most one is out at a time; ``ready`` holds the keys whose head can be
  handed out, so a hot key with a long backlog occupies one slot in it and
  never blocks the other keys of the server.
- A receipt is valid only for the latest delivery of its message and only
  before its visibility deadline: a late or repeated ack is refused.
- A message released (processing failed) or whose visibility timed out
  after ``max_receives`` deliveries goes to the dead-letter queue, and its
  key moves on to the next message.
- An enqueue whose id was seen in the same queue within ``dedup_window``
  is accepted and dropped (ids are scoped per queue, as in SQS). The
  window is counted from the enqueue, or from the server's last recovery
  for ids it replayed, and must exceed the visibility timeout: a
  redelivered input's outputs come at least that late.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from actors.queue._journal import (
    JournalEvent,
    MessageAcked,
    MessageDeadLettered,
    MessageEnqueued,
    MessageReceived,
    MessageReleased,
    ServerCheckpoint,
    VisibilityExpired,
)
from actors.queue._messages import Delivery, QueueDepth, QueuedMessage, Receipt

if TYPE_CHECKING:
    from actors.queue._metrics import QueueMetrics


@dataclass(frozen=True, slots=True)
class ServerSettings:
    visibility_timeout: float = 30.0
    max_receives: int = 5
    dedup_window: float = 300.0


class _Held:
    """A stored message and its delivery state."""

    __slots__ = ("at", "deadline", "journal_seq", "message", "offset", "receives")

    def __init__(self, message: QueuedMessage, offset: int, at: float, journal_seq: int) -> None:
        self.message = message
        self.offset = offset
        self.at = at
        self.journal_seq = journal_seq
        self.receives = 0
        self.deadline = 0.0


class _Key:
    __slots__ = ("flight", "name", "pending", "queued")

    def __init__(self, name: str) -> None:
        self.name = name
        self.pending: deque[_Held] = deque()
        self.flight: _Held | None = None
        self.queued = False

    @property
    def deliverable(self) -> bool:
        return self.flight is None and bool(self.pending)


class _Queue:
    __slots__ = ("dead", "held", "in_flight", "keys", "name", "ready")

    def __init__(self, name: str) -> None:
        self.name = name
        self.keys: dict[str, _Key] = {}
        self.ready: deque[_Key] = deque()
        self.held = 0
        self.in_flight = 0
        self.dead = 0

    def make_ready(self, k: _Key) -> None:
        if not k.queued and k.deliverable:
            k.queued = True
            self.ready.append(k)

    def forget_if_idle(self, k: _Key) -> None:
        if not k.pending and k.flight is None:
            del self.keys[k.name]


class ServerState:
    """See the module docstring. ``now`` is the runtime clock, ``wall`` the stamp clock."""

    def __init__(self, server: int, settings: ServerSettings, now: Callable[[], float],
                 wall: Callable[[], float], metrics: QueueMetrics | None = None) -> None:
        self.server = server
        self.settings = settings
        self.now = now
        self.wall = wall
        self.metrics = metrics
        self.queues: dict[str, _Queue] = {}
        self.next_offset = 0
        self._dedup: dict[tuple[str, str], tuple[float, int]] = {}
        """(queue, id) -> (stamp, journal seq) of every id within the dedup window."""
        self._dedup_order: deque[tuple[float, tuple[str, str]]] = deque()
        self._expiry: list[tuple[float, int, str, str, int, int]] = []
        self._tie = itertools.count()

    def _queue(self, name: str) -> _Queue:
        q = self.queues.get(name)
        if q is None:
            q = self.queues[name] = _Queue(name)
        return q

    # -- planning: validate and say what would happen ------------------------

    def plan_enqueue(self, queue: str, messages: Iterable[QueuedMessage]
                     ) -> tuple[list[JournalEvent], int]:
        """Events for the messages not seen within the dedup window, and the duplicate count."""
        at = self.wall()
        self._prune_dedup(at)
        events: list[JournalEvent] = []
        seen: set[str] = set()
        duplicates = 0
        offset = self.next_offset
        dedup = self._dedup
        for message in messages:
            if (queue, message.id) in dedup or message.id in seen:
                duplicates += 1
                continue
            seen.add(message.id)
            events.append(MessageEnqueued(queue, offset, at, message))
            offset += 1
        return events, duplicates

    def plan_receive(self, queue: str, max_messages: int
                     ) -> tuple[list[JournalEvent], list[Delivery]]:
        """The heads of up to ``max_messages`` ready keys (never two of one key)."""
        q = self.queues.get(queue)
        if q is None or max_messages <= 0:
            return [], []
        at = self.wall()
        events: list[JournalEvent] = []
        deliveries: list[Delivery] = []
        ready = q.ready
        while ready and len(deliveries) < max_messages:
            # Popping from the ready index is the one change planning makes: it is
            # only an index (recovery rebuilds it), and a chosen key is out until
            # its message is acked, released or expires, which re-adds it.
            k = ready.popleft()
            k.queued = False
            if not k.deliverable:
                continue
            head = k.pending[0]
            attempt = head.receives + 1
            events.append(MessageReceived(queue, k.name, head.offset, attempt, at))
            deliveries.append(Delivery(Receipt(self.server, queue, k.name, head.offset, attempt),
                                       head.message))
        return events, deliveries

    def _valid(self, receipt: Receipt, now: float) -> _Held | None:
        q = self.queues.get(receipt.queue)
        k = q.keys.get(receipt.key) if q is not None else None
        flight = k.flight if k is not None else None
        if (flight is None or flight.offset != receipt.offset
                or flight.receives != receipt.attempt or now >= flight.deadline):
            return None
        return flight

    def plan_ack(self, receipts: Iterable[Receipt]) -> tuple[list[JournalEvent], list[Receipt]]:
        """Events for the valid receipts; the stale, late or unknown ones are refused."""
        now = self.now()
        at = self.wall()
        events: list[JournalEvent] = []
        refused: list[Receipt] = []
        done: set[tuple[str, str]] = set()
        for r in receipts:
            if r.server != self.server or (r.queue, r.key) in done or self._valid(r, now) is None:
                refused.append(r)
                continue
            done.add((r.queue, r.key))
            events.append(MessageAcked(r.queue, r.key, r.offset, r.attempt, at))
        return events, refused

    def plan_release(self, receipts: Iterable[Receipt], reason: str
                     ) -> tuple[list[JournalEvent], list[Receipt]]:
        """Make the messages visible now, or dead-letter those out of receives."""
        now = self.now()
        at = self.wall()
        events: list[JournalEvent] = []
        refused: list[Receipt] = []
        done: set[tuple[str, str]] = set()
        for r in receipts:
            held = None if (r.queue, r.key) in done else self._valid(r, now)
            if r.server != self.server or held is None:
                refused.append(r)
                continue
            done.add((r.queue, r.key))
            events.append(MessageReleased(r.queue, r.key, r.offset, r.attempt, at))
            if held.receives >= self.settings.max_receives:
                events.append(MessageDeadLettered(
                    r.queue, r.key, r.offset, at,
                    f"released after {held.receives} receives: {reason}"))
        return events, refused

    def plan_expire(self) -> list[JournalEvent]:
        """Visibility timeouts that have passed: the message is visible again, or dead."""
        now = self.now()
        at = self.wall()
        events: list[JournalEvent] = []
        heap = self._expiry
        while heap and heap[0][0] <= now:
            _, _, queue, key, offset, attempt = heapq.heappop(heap)
            q = self.queues.get(queue)
            k = q.keys.get(key) if q is not None else None
            flight = k.flight if k is not None else None
            if flight is None or flight.offset != offset or flight.receives != attempt:
                continue
            events.append(VisibilityExpired(queue, key, offset, attempt, at))
            if flight.receives >= self.settings.max_receives:
                events.append(MessageDeadLettered(
                    queue, key, offset, at,
                    f"visibility timeout after {flight.receives} receives"))
        return events

    # -- applying: the only place state changes ------------------------------

    def apply(self, events: Iterable[JournalEvent], journal_seq: int, live: bool = True) -> None:
        """Apply journal events (just written, or replayed by ``recover``)."""
        metrics = self.metrics if live else None
        now = self.now()
        # Replayed dedup ids count from the recovery, not from their enqueue: the
        # downtime must not age them, or work in flight at the crash, redelivered
        # after the restart, would re-send outputs whose ids had expired meanwhile.
        dedup_floor = 0.0 if live else self.wall()
        for event in events:
            if isinstance(event, MessageEnqueued):
                self._apply_enqueued(event, journal_seq, metrics, dedup_floor)
            elif isinstance(event, MessageReceived):
                self._apply_received(event, now, metrics)
            elif isinstance(event, MessageAcked):
                self._apply_acked(event, metrics)
            elif isinstance(event, MessageReleased | VisibilityExpired):
                self._apply_visible(event, metrics)
            else:
                self._apply_dead(event, metrics)

    def _apply_enqueued(self, e: MessageEnqueued, journal_seq: int,
                        metrics: QueueMetrics | None, dedup_floor: float) -> None:
        q = self._queue(e.queue)
        message = e.message
        k = q.keys.get(message.key)
        if k is None:
            k = q.keys[message.key] = _Key(message.key)
        k.pending.append(_Held(message, e.offset, e.at, journal_seq))
        q.held += 1
        q.make_ready(k)
        stamp = max(e.at, dedup_floor)
        scoped = (e.queue, message.id)
        self._dedup[scoped] = (stamp, journal_seq)
        self._dedup_order.append((stamp, scoped))
        if e.offset >= self.next_offset:
            self.next_offset = e.offset + 1
        if metrics is not None:
            metrics.enqueued += 1

    def _head(self, queue: str, key: str, offset: int) -> tuple[_Queue, _Key, _Held] | None:
        q = self.queues.get(queue)
        k = q.keys.get(key) if q is not None else None
        if k is None or not k.pending or k.pending[0].offset != offset:
            return None  # settled before the checkpoint this replay started from
        return q, k, k.pending[0]  # type: ignore[return-value]

    def _apply_received(self, e: MessageReceived, now: float,
                        metrics: QueueMetrics | None) -> None:
        found = self._head(e.queue, e.key, e.offset)
        if found is None:
            return
        q, k, head = found
        if k.flight is None:
            q.in_flight += 1
        head.receives = e.attempt
        head.deadline = now + self.settings.visibility_timeout
        k.flight = head
        heapq.heappush(self._expiry, (head.deadline, next(self._tie), e.queue, e.key,
                                      e.offset, e.attempt))
        if metrics is not None:
            metrics.on_delivery(e.queue, e.key, e.offset, e.attempt, now)

    def _apply_acked(self, e: MessageAcked, metrics: QueueMetrics | None) -> None:
        found = self._head(e.queue, e.key, e.offset)
        if found is None:
            return
        q, k, head = found
        self._remove_head(q, k)
        if metrics is not None:
            metrics.on_ack(e.queue, e.key, e.at - head.at)

    @staticmethod
    def _remove_head(q: _Queue, k: _Key) -> None:
        """The key's head is settled (acked or dead): its next message may go out."""
        if k.flight is not None:  # only ever the head: one message out per key
            q.in_flight -= 1
            k.flight = None
        k.pending.popleft()
        q.held -= 1
        q.make_ready(k)
        q.forget_if_idle(k)

    def _apply_visible(self, e: MessageReleased | VisibilityExpired,
                       metrics: QueueMetrics | None) -> None:
        found = self._head(e.queue, e.key, e.offset)
        if found is None:
            return
        q, k, head = found
        if k.flight is head:
            q.in_flight -= 1
            k.flight = None
        q.make_ready(k)
        if metrics is not None:
            metrics.on_visible_again(e)

    def _apply_dead(self, e: MessageDeadLettered, metrics: QueueMetrics | None) -> None:
        found = self._head(e.queue, e.key, e.offset)
        if found is None:
            return
        q, k, _head = found
        self._remove_head(q, k)
        q.dead += 1
        if metrics is not None:
            metrics.dead_lettered += 1

    # -- questions -------------------------------------------------------------

    def held(self, queue: str, key: str, offset: int) -> _Held | None:
        found = self._head(queue, key, offset)
        return found[2] if found is not None else None

    def depth(self, queue: str) -> QueueDepth:
        q = self.queues.get(queue)
        if q is None:
            return QueueDepth(0, 0, 0)
        return QueueDepth(q.held - q.in_flight, q.in_flight, q.dead)

    def next_deadline(self) -> float | None:
        return self._expiry[0][0] if self._expiry else None

    def checkpoint(self, high_water: int) -> ServerCheckpoint:
        """Where recovery may start: the oldest entry holding a live message or dedup id."""
        self._prune_dedup(self.wall())
        from_seq = high_water
        if self._dedup_order:
            from_seq = min(from_seq, self._dedup[self._dedup_order[0][1]][1])
        for q in self.queues.values():
            for k in q.keys.values():
                if k.pending:
                    from_seq = min(from_seq, k.pending[0].journal_seq)
        return ServerCheckpoint(from_seq=from_seq, next_offset=self.next_offset)

    def _prune_dedup(self, at: float) -> None:
        horizon = at - self.settings.dedup_window
        order = self._dedup_order
        dedup = self._dedup
        while order and order[0][0] < horizon:
            stamp, ident = order.popleft()
            current = dedup.get(ident)
            if current is not None and current[0] == stamp:
                del dedup[ident]
