"""Planning a settlement request: which batches it acks, gives back or dead-letters.

Pure logic over a server's queues (``QueueState``), no I/O; ``ServerState``
calls it to plan a ``Settle`` or ``SettleTaken`` and applies the events it
returns once they are journaled. The rules (kept here):

- A receipt is valid only for the batch out on its key now (same head
  offset, same attempt, same size) and before its visibility deadline (at
  the deadline it is already too late), and only once per request; an
  invalid one is refused alone, the rest of the request still counts.
- A settlement acks its batch's first ``acked`` messages; a named failure
  gives the rest back, charging only the failing member, which is
  dead-lettered once it has been received ``max_receives`` times.
- Batches acked whole in columns (``SettleTaken``) cost no object each;
  columns of different lengths are refused whole (``MalformedSettlement``)
  before anything is planned.
"""

from __future__ import annotations

from collections.abc import Iterable

from actors.queue._journal import (
    BatchesAcked,
    BatchReturned,
    JournalEvent,
    MessageDeadLettered,
)
from actors.queue._keys import KeyState, QueueState
from actors.queue._messages import Receipt, Settlement, SettleTaken
from runtime import ShardlineError


class MalformedSettlement(ShardlineError):
    """A ``SettleTaken`` whose columns differ in length (nothing of it is applied)."""


def plan_settlements(queues: dict[str, QueueState], server: int, max_receives: int,
                     now: float, at: float, settlements: Iterable[Settlement],
                     whole: SettleTaken | None = None
                     ) -> tuple[list[JournalEvent], list[Receipt], int]:
    """Events for the valid settlements (and the batches ``whole`` acks whole) at
    runtime-clock ``now`` and stamp ``at``, the refused receipts, and how many
    messages the valid ones settled."""
    acks: dict[str, BatchesAcked] = {}
    later: list[JournalEvent] = []
    refused: list[Receipt] = []
    done: set[KeyState] = set()
    settled = 0 if whole is None else _ack_whole(queues, server, now, at, whole, acks,
                                                  refused, done)
    for s in settlements:
        r = s.receipt
        count = r.count
        acked = s.acked
        q = queues.get(r.queue)
        k = q.keys.get(r.key) if q is not None else None
        if (k is None or not k.flight or k.flight != count or k.attempt != r.attempt
                or k.offsets[k.head] != r.offset or now >= k.deadline or k in done
                or r.server != server or not 0 <= acked <= count
                or not (s.failed == -1 or acked <= s.failed < count)):
            refused.append(r)
            continue
        done.add(k)
        settled += count
        if acked:
            event = acks.get(r.queue)
            if event is None:
                event = acks[r.queue] = BatchesAcked(r.queue, at, [], [], [], [], [])
            event.keys.append(r.key)
            event.offsets.append(r.offset)
            event.counts.append(acked)
            event.attempts.append(r.attempt)
            event.lasts.append(k.offsets[k.head + acked - 1])
        if acked == count:
            continue
        failed = s.failed
        untried = [] if failed < 0 else [
            offset for i, offset in enumerate(k.offsets[k.head + acked:k.head + count], acked)
            if i != failed]
        later.append(BatchReturned(r.queue, r.key, r.offset, r.attempt, at, False, untried))
        if failed >= 0 and (receives := k.receives_of(failed)) >= max_receives:
            later.append(MessageDeadLettered(
                r.queue, r.key, k.offsets[k.head + failed], at,
                f"released after {receives} receives: {s.reason}"))
    return [*acks.values(), *later], refused, settled


def _ack_whole(queues: dict[str, QueueState], server: int, now: float, at: float,
               whole: SettleTaken, acks: dict[str, BatchesAcked], refused: list[Receipt],
               done: set[KeyState]) -> int:
    """The batches acked whole, named in columns (no object per batch unless it is
    refused); how many messages they settled."""
    queue = whole.queue
    columns = (whole.keys, whole.offsets, whole.attempts, whole.counts)
    if len({len(c) for c in columns}) > 1:
        raise MalformedSettlement(
            f"server {server}: SettleTaken of queue {queue!r} has columns of "
            f"lengths {[len(c) for c in columns]}; expected one length")
    q = queues.get(queue)
    known = q.keys if q is not None else {}
    keys, offsets, attempts, counts = columns
    # Each key at most once in the columns (checked in C), so no batch needs a
    # lookup in ``done`` unless the request settles others too.
    repeats = len(set(keys)) != len(keys)
    track = repeats or bool(whole.others) or bool(done)
    lasts: list[int] = []
    add_last = lasts.append
    bad: list[int] = []
    settled = 0
    for i, (key, offset, attempt, count) in enumerate(zip(*columns, strict=True)):
        k = known.get(key)
        if (k is None or not k.flight or k.flight != count or k.attempt != attempt
                or k.offsets[k.head] != offset or now >= k.deadline
                or (track and k in done)):
            refused.append(Receipt(server, queue, key, offset, attempt, count))
            bad.append(i)
            continue
        if track:
            done.add(k)
        settled += count
        add_last(offset if count == 1 else k.offsets[k.head + count - 1])
    if bad:
        good = sorted(set(range(len(keys))) - set(bad))
        keys = [keys[i] for i in good]
        offsets, attempts, counts = ([column[i] for i in good]
                                     for column in (offsets, attempts, counts))
    if not keys:
        return settled
    event = acks.get(queue)
    if event is None:
        acks[queue] = BatchesAcked(queue, at, list(keys), list(offsets), list(counts),
                                   list(attempts), lasts)
    else:
        event.keys.extend(keys)
        event.offsets.extend(offsets)
        event.counts.extend(counts)
        event.attempts.extend(attempts)
        event.lasts.extend(lasts)
    return settled
