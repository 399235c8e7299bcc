"""One queue server's state: keys, their messages in order, what is out, dedup ids.

Pure logic, no I/O. The server *plans* a request (validates it against the
current state and returns the journal events it implies, changing nothing
that matters), then *applies* them at once and journals them; its answer
waits until they are durable (``_server``). Recovery
applies the journal's events the same way, so a restarted server ends in
exactly the state the journal describes.

Policy, kept here:

- Per key, messages are handed out in offset (enqueue) order, in batches
  of consecutive messages from the head, and at most one batch of a key is
  out at a time (SQS FIFO message groups); a hot key with a long backlog
  occupies one slot in the ready index and never blocks the other keys.
- A windowed queue (a reduce tier's input, see ``WindowPolicy``) hands a
  key out only as a whole window, or a partial one once its oldest message
  has waited ``max_age`` or the queue is sealed; a window handed out again
  (its visibility timed out, or it was released whole) has the same members.
- A receipt is valid only for the latest delivery of its batch and only
  before its visibility deadline: a late or repeated settlement is refused.
- Every delivery counts against each message it hands out; a message that
  fails (named by its client) or whose batch times out, once it has been
  received ``max_receives`` times, goes to the dead-letter queue and its
  key moves on. Members handed out with a failing one but not tried get
  that delivery back.
- An enqueue whose id was seen in the same queue within ``dedup_window``
  is accepted and dropped (ids are scoped per queue, as in SQS). The
  window is counted from the enqueue, or from the server's last recovery
  for ids it replayed, and must exceed the visibility timeout: a
  redelivered input's outputs come at least that late.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Callable, Iterable

from actors.queue._dedup import DedupWindow
from actors.queue._journal import (
    BatchesAcked,
    BatchesReceived,
    BatchReturned,
    JournalEvent,
    MessageDeadLettered,
    MessagesEnqueued,
    QueueSealed,
    ServerCheckpoint,
)
from actors.queue._keys import Held, KeyState, QueueState
from actors.queue._messages import (
    QueueDepth,
    QueuedMessage,
    Receipt,
    Settlement,
    SettleTaken,
    Taken,
)
from actors.queue._metrics import QueueMetrics
from actors.queue._settings import ServerSettings
from actors.queue._settling import plan_settlements


class ServerState:
    """See the module docstring. ``now`` is the runtime clock, ``wall`` the stamp clock."""

    def __init__(self, server: int, settings: ServerSettings, now: Callable[[], float],
                 wall: Callable[[], float], metrics: QueueMetrics | None = None) -> None:
        self.server = server
        self.settings = settings
        self.now = now
        self.wall = wall
        self.metrics = metrics
        self.queues: dict[str, QueueState] = {}
        self.next_offset = 0
        self._dedup: dict[str, DedupWindow] = {}
        """Per queue: the ids it has seen within the dedup window."""
        self._expiry: deque[tuple[float, str, list[str], list[int], list[int], str]] = deque()
        """(deadline, queue, keys, offsets, attempts, holder) per receive: deadlines are
        the receive's time plus one constant timeout, so they come in order."""
        self._unconfirmed: deque[tuple[float, str, list[str], list[int], list[int], str]] = \
            deque()
        """Receives applied live but not yet durable (``confirm_receives``), oldest first,
        as ``_expiry`` holds them but with no deadline (inf): their visibility timeout
        starts when they are handed out, not before."""
        self._planned_ids: tuple[MessagesEnqueued, set[str]] | None = None
        """The ids of the enqueue event planned last (a cache: applying that event adds
        them to the dedup window without reading every message again)."""

    def _window(self, queue: str) -> DedupWindow:
        window = self._dedup.get(queue)
        if window is None:
            window = self._dedup[queue] = DedupWindow(self.settings.dedup_window)
        return window

    def _queue(self, name: str) -> QueueState:
        q = self.queues.get(name)
        if q is None:
            q = self.queues[name] = QueueState(name, self.settings.windows.get(name))
        return q

    # -- planning: validate and say what would happen ------------------------

    def plan_enqueue(self, queue: str, messages: Iterable[QueuedMessage]
                     ) -> tuple[list[JournalEvent], int, int]:
        """The event for the messages not seen in ``queue`` within the dedup window,
        how many those are, and the duplicate count."""
        at = self.wall()
        window = self._window(queue)
        window.prune(at)
        if not isinstance(messages, list):
            messages = list(messages)
        ids = set([m.id for m in messages])  # a list first: faster
        if len(ids) == len(messages) and window.none_of(ids):  # the usual case, in C
            if not messages:
                return [], 0, 0
            event = MessagesEnqueued(queue, self.next_offset, at, messages)
            self._planned_ids = (event, ids)
            return [event], len(messages), 0
        fresh: list[QueuedMessage] = []
        seen: set[str] = set()
        duplicates = 0
        for message in messages:
            ident = message.id
            if ident in window or ident in seen:
                duplicates += 1
                continue
            seen.add(ident)
            fresh.append(message)
        if not fresh:
            return [], 0, duplicates
        event = MessagesEnqueued(queue, self.next_offset, at, fresh)
        self._planned_ids = (event, seen)
        return [event], len(fresh), duplicates

    def plan_receive(self, queue: str, max_messages: int, per_key: int = 1, holder: str = ""
                     ) -> tuple[list[JournalEvent], Taken | None]:
        """Batches from distinct keys, each its key's first messages, about
        ``max_messages`` in all (at least one batch if any can go out), in columns."""
        q = self.queues.get(queue)
        if q is None or max_messages <= 0:
            return [], None
        at = self.wall()
        keys: list[str] = []
        offsets: list[int] = []
        counts: list[int] = []
        attempts: list[int] = []
        lasts: list[int] = []
        messages: list[QueuedMessage] = []
        message_offsets: list[int] = []
        add_key, add_offset, add_count = keys.append, offsets.append, counts.append
        add_attempt, add_last = attempts.append, lasts.append
        add_message, add_message_offset = messages.append, message_offsets.append
        add_messages, add_message_offsets = messages.extend, message_offsets.extend
        for k, count in q.choose(at, max_messages, max(1, per_key)):
            head = k.head
            column = k.offsets
            offset = column[head]
            if count == 1:
                add_message(k.messages[head])
                add_message_offset(offset)
                add_last(offset)
            else:
                end = head + count
                add_messages(k.messages[head:end])
                add_message_offsets(column[head:end])
                add_last(column[end - 1] if end <= len(column) else column[-1])
            add_key(k.name)
            add_offset(offset)
            add_count(count)
            add_attempt(receives[0] + 1 if (receives := k.receives) else 1)
        if not keys:
            return [], None
        return ([BatchesReceived(queue, at, keys, offsets, counts, attempts, holder, lasts)],
                Taken(self.server, queue, keys, offsets, attempts, counts, messages,
                      message_offsets))

    def plan_settle(self, settlements: Iterable[Settlement], whole: SettleTaken | None = None
                    ) -> tuple[list[JournalEvent], list[Receipt], int]:
        """Events for the valid settlements (and the batches ``whole`` acks whole), the
        refused (stale, late, unknown or malformed) receipts, and how many messages the
        valid ones settled (see ``_settling``)."""
        return plan_settlements(self.queues, self.server, self.settings.max_receives,
                                self.now(), self.wall(), settlements, whole)

    def plan_expire(self) -> list[JournalEvent]:
        """Visibility timeouts that have passed: the batch is visible again, and its
        head dead if it was received ``max_receives`` times."""
        now = self.now()
        at = self.wall()
        events: list[JournalEvent] = []
        expiry = self._expiry
        while expiry and expiry[0][0] <= now:
            deadline, queue, keys, offsets, attempts, _holder = expiry.popleft()
            self._return_out(queue, keys, offsets, attempts, deadline, at,
                             "visibility timeout", events)
        return events

    def plan_holder_restarted(self, holder: str) -> list[JournalEvent]:
        """The client ``holder`` restarted: what an earlier run of it still holds comes
        back now, exactly as if its visibility had timed out (the run that held it is
        gone; a settlement from it would be refused once the batch is handed out again)."""
        at = self.wall()
        events: list[JournalEvent] = []
        for deadline, queue, keys, offsets, attempts, held_by in [*self._expiry,
                                                                  *self._unconfirmed]:
            if held_by == holder:
                self._return_out(queue, keys, offsets, attempts, deadline, at,
                                 f"client {holder} restarted", events)
        return events

    def confirm_receives(self, count: int) -> None:
        """The oldest ``count`` receives applied live are durable and handed out: their
        visibility timeout starts now (a batch still out gets the whole timeout)."""
        deadline = self.now() + self.settings.visibility_timeout
        unconfirmed = self._unconfirmed
        expiry = self._expiry
        for _ in range(count):
            _, queue, keys, offsets, attempts, holder = unconfirmed.popleft()
            expiry.append((deadline, queue, keys, offsets, attempts, holder))
            q = self.queues.get(queue)
            if q is None:
                continue
            for key, offset, attempt in zip(keys, offsets, attempts, strict=True):
                k = _out(q, key, offset, attempt)
                if k is not None:
                    k.deadline = deadline

    @property
    def unconfirmed_receives(self) -> int:
        """Receives applied live and not yet confirmed durable."""
        return len(self._unconfirmed)

    def _return_out(self, queue: str, keys: list[str], offsets: list[int],
                    attempts: list[int], deadline: float, at: float, why: str,
                    events: list[JournalEvent]) -> None:
        """Events returning the batches of one receive (its visibility ``deadline``;
        inf while unconfirmed) that are still out. A batch given back with its head
        untried goes out again with the same head offset and attempt: only the
        delivery's own deadline tells a later delivery from this one."""
        q = self.queues.get(queue)
        if q is None:
            return
        for key, offset, attempt in zip(keys, offsets, attempts, strict=True):
            k = _out(q, key, offset, attempt)
            if k is None or k.deadline != deadline:
                continue  # settled in time, or out again since
            events.append(BatchReturned(queue, key, offset, attempt, at, True))
            receives = k.receives_of(0)
            if receives >= self.settings.max_receives:
                events.append(MessageDeadLettered(
                    queue, key, offset, at, f"{why} after {receives} receives"))

    def plan_seal(self, queue: str) -> list[JournalEvent]:
        q = self.queues.get(queue)
        return [] if q is not None and q.sealed else [QueueSealed(queue, self.wall())]

    # -- applying: the only place state changes ------------------------------

    def apply(self, events: Iterable[JournalEvent], journal_seq: int, live: bool = True,
              staged: bool = False) -> None:
        """Apply journal events: ``staged`` ones, applied before their write is durable
        (their receives' visibility timeouts start at ``confirm_receives``), ones just
        written, or ones ``recover`` replays (``live=False``)."""
        metrics = self.metrics if live else None
        for event in events:
            if isinstance(event, MessagesEnqueued):
                self._apply_enqueued(event, journal_seq, metrics, live)
            elif isinstance(event, BatchesReceived):
                self._apply_received(event, metrics, staged)
            elif isinstance(event, BatchesAcked):
                self._apply_acked(event, metrics)
            elif isinstance(event, BatchReturned):
                self._apply_returned(event, metrics)
            elif isinstance(event, MessageDeadLettered):
                self._apply_dead(event, metrics)
            else:
                self._queue(event.queue).sealed = True

    def _apply_enqueued(self, e: MessagesEnqueued, journal_seq: int,
                        metrics: QueueMetrics | None, live: bool) -> None:
        q = self._queue(e.queue)
        # Replayed dedup ids count from the recovery, not from their enqueue: the
        # downtime must not age them, or work in flight at the crash, redelivered
        # after the restart, would re-send outputs whose ids had expired meanwhile.
        stamp = e.at if live else max(e.at, self.wall())
        keys = q.keys
        at = e.at
        stamp_of = (at, journal_seq)
        ready = q.ready
        add_ready = ready.append
        messages = e.messages
        first = e.first_offset
        # q.make_ready(k), inlined: this runs once per message (a key just given a
        # message is deliverable unless a batch of it is out)
        if q.window is None:
            for offset, message in enumerate(messages, first):
                key = message.key
                k = keys.get(key)
                if k is None:
                    k = keys[key] = KeyState(key)
                k.messages.append(message)
                k.offsets.append(offset)
                k.stamps.append(stamp_of)
                if not k.flight and not k.queued:
                    k.queued = True
                    add_ready(k)
        else:
            full = q.full
            size = q.window.size
            for offset, message in enumerate(messages, first):
                key = message.key
                k = keys.get(key)
                if k is None:
                    k = keys[key] = KeyState(key)
                column = k.offsets
                k.messages.append(message)
                column.append(offset)
                k.stamps.append(stamp_of)
                if not k.flight:
                    if not k.queued:
                        k.queued = True
                        add_ready(k)
                    if not k.in_full and (k.pinned or len(column) - k.head >= size):
                        k.in_full = True
                        full.append(k)
        offset = first + len(messages)
        planned = self._planned_ids
        if planned is not None and planned[0] is e:
            ids, self._planned_ids = planned[1], None
        else:  # a replay, or a stale plan
            ids = set([m.id for m in messages])
        self._window(e.queue).add(ids, stamp, journal_seq)
        q.held += len(messages)
        if offset > self.next_offset:
            self.next_offset = offset
        if metrics is not None:
            metrics.enqueued += len(messages)

    def _apply_received(self, e: BatchesReceived, metrics: QueueMetrics | None,
                        staged: bool) -> None:
        q = self._queue(e.queue)
        windowed = q.window is not None
        if staged:  # out once durable: no deadline until then (``confirm_receives``)
            deadline = math.inf
            self._unconfirmed.append((deadline, e.queue, e.keys, e.offsets, e.attempts,
                                      e.holder))
        else:  # written (or recovered: out since before the crash), a fresh timeout
            deadline = self.now() + self.settings.visibility_timeout
            self._expiry.append((deadline, e.queue, e.keys, e.offsets, e.attempts,
                                 e.holder))
        keys = q.keys
        lasts = e.lasts
        delivered = redelivered = 0
        for i, (key, offset, count, attempt) in enumerate(zip(
                e.keys, e.offsets, e.counts, e.attempts, strict=True)):
            k = keys.get(key)
            if k is None or not (column := k.offsets) or column[k.head] != offset:
                # A replay from a checkpoint after the head's enqueue: the head was
                # settled before it; the members enqueued after it still count this.
                if k is not None and lasts:
                    self._count_receive(k, offset, lasts[i])
                continue
            if not k.flight:
                q.in_flight += count
            k.flight = count
            k.attempt = attempt
            k.deadline = deadline
            if windowed:
                k.pinned = count
            receives = k.receives
            if count == 1:
                if receives:
                    receives[0] += 1
                else:
                    receives.append(1)
            else:
                held = len(column) - k.head
                members = count if count <= held else held
                if receives:
                    k.count_receives(0, members)
                else:  # the usual case: a batch handed out the first time
                    receives.extend([1] * members)
            delivered += count
            if attempt > 1:
                redelivered += count
        if metrics is not None:
            metrics.deliveries += delivered
            metrics.redeliveries += redelivered

    def _apply_acked(self, e: BatchesAcked, metrics: QueueMetrics | None) -> None:
        q = self._queue(e.queue)
        keys = q.keys
        samples = metrics.acks if metrics is not None else None
        at = e.at
        acked = 0
        first_sample = len(samples.seconds) if samples is not None else 0
        add_second = samples.seconds.append if samples is not None else None
        add_key = samples.keys.append if samples is not None else None
        add_seconds = samples.seconds.extend if samples is not None else None
        add_keys = samples.keys.extend if samples is not None else None
        in_flight = q.in_flight
        ready = q.ready
        full = q.full
        size = q.window.size if q.window is not None else 0
        for i, (key, offset, count) in enumerate(zip(e.keys, e.offsets, e.counts,
                                                     strict=True)):
            k = keys.get(key)
            if k is None or not (column := k.offsets) or column[head := k.head] != offset:
                # A replay from a checkpoint after the head's enqueue: settle the
                # members enqueued after it (it holds none of the key's older ones).
                if k is not None and e.lasts:
                    acked += self._settle_through(q, k, e.lasts[i])
                continue
            flight = k.flight
            if flight:
                in_flight -= flight
                k.flight = 0
            held = len(column) - head
            stamps = k.stamps
            if count == 1:
                if add_second is not None and add_key is not None:
                    add_second(at - stamps[head][0])
                    add_key(key)
            else:
                if count > held:
                    count = held
                if add_seconds is not None and add_keys is not None:
                    stamp = stamps[head]
                    if stamps[head + count - 1] is stamp:  # one enqueue's: all between too
                        add_seconds([at - stamp[0]] * count)
                    else:
                        add_seconds([at - s[0] for s in stamps[head:head + count]])
                    add_keys([key] * count)
            if count == held:  # k.drop(count), inlined: the usual case, all of it settled
                column.clear()
                k.messages.clear()
                stamps.clear()
                k.receives.clear()
                k.head = 0
            else:
                k.drop(count)
            acked += count
            k.pinned = 0
            if count < held:  # q.make_ready(k), inlined: nothing of the key is out now
                if not k.queued:
                    k.queued = True
                    ready.append(k)
                if size and not k.in_full and held - count >= size:
                    k.in_full = True
                    full.append(k)
        q.in_flight = in_flight
        q.held -= acked
        if metrics is not None and samples is not None:
            metrics.acked += acked
            samples.tag(samples.queue_index(e.queue), first_sample)

    @staticmethod
    def _count_receive(k: KeyState, first: int, last: int) -> None:
        """Count a receive for ``k``'s messages at offsets ``first`` to ``last``."""
        offsets, head = k.offsets, k.head
        start = bisect_left(offsets, first, head) - head
        stop = bisect_right(offsets, last, head) - head
        if start < stop:
            k.count_receives(start, stop)

    @staticmethod
    def _settle_through(q: QueueState, k: KeyState, last: int) -> int:
        """Drop ``k``'s messages up to offset ``last``; how many."""
        dropped = bisect_right(k.offsets, last, k.head) - k.head
        if dropped:
            k.drop(dropped)
            k.pinned = 0
            q.make_ready(k)
        return dropped

    @staticmethod
    def _land(q: QueueState, k: KeyState) -> None:
        """The key's batch is no longer out."""
        if k.flight:
            q.in_flight -= k.flight
            k.flight = 0

    def _apply_returned(self, e: BatchReturned, metrics: QueueMetrics | None) -> None:
        q = self._queue(e.queue)
        k = q.keys.get(e.key)
        if k is None:
            return
        if k.flight and k.attempt == e.attempt and k.offsets[k.head] == e.offset:
            self._land(q, k)
        for offset in set(e.untried):
            i = k.index(offset)
            if i >= 0:
                k.count_receives(i, i + 1, -1)
        q.make_ready(k)
        if metrics is not None:
            metrics.on_returned(e.expired)

    def _apply_dead(self, e: MessageDeadLettered, metrics: QueueMetrics | None) -> None:
        q = self._queue(e.queue)
        k = q.keys.get(e.key)
        i = k.index(e.offset) if k is not None else -1
        if k is None or i < 0:
            return
        self._land(q, k)
        k.remove(i)
        k.pinned = 0  # a window that lost a member is refilled
        q.held -= 1
        q.dead += 1
        q.make_ready(k)
        if metrics is not None:
            metrics.dead_lettered += 1

    # -- questions -------------------------------------------------------------

    def held(self, queue: str, key: str, offset: int) -> Held | None:
        q = self.queues.get(queue)
        k = q.keys.get(key) if q is not None else None
        return k.find(offset) if k is not None else None

    def depth(self, queue: str) -> QueueDepth:
        q = self.queues.get(queue)
        if q is None:
            return QueueDepth(0, 0, 0)
        return QueueDepth(q.held - q.in_flight, q.in_flight, q.dead)

    def next_deadline(self) -> float | None:
        return self._expiry[0][0] if self._expiry else None

    def checkpoint(self, high_water: int) -> ServerCheckpoint:
        """Where recovery may start: the oldest entry holding a live message or dedup id."""
        from_seq = high_water
        at = self.wall()
        for window in self._dedup.values():
            window.prune(at)
            oldest = window.oldest_seq()
            if oldest is not None:
                from_seq = min(from_seq, oldest)
        for q in self.queues.values():
            q.forget_idle()
            for k in q.keys.values():
                from_seq = min(from_seq, k.stamps[k.head][1])
        sealed = sorted(name for name, q in self.queues.items() if q.sealed)
        return ServerCheckpoint(from_seq=from_seq, next_offset=self.next_offset, sealed=sealed)

    def restore(self, checkpoint: ServerCheckpoint) -> None:
        """Start a recovery from ``checkpoint`` (before replaying the journal after it)."""
        self.next_offset = checkpoint.next_offset
        for name in checkpoint.sealed:
            self._queue(name).sealed = True


def _out(q: QueueState, key: str, offset: int, attempt: int) -> KeyState | None:
    """``key``'s state if the batch with head ``offset`` handed out as delivery
    ``attempt`` is out now, else None (settled, returned, or never out)."""
    k = q.keys.get(key)
    if k is None or not k.flight or k.attempt != attempt or k.offsets[k.head] != offset:
        return None
    return k
