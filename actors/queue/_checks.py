"""The queue invariants, checked against what is durable, not what actors believe.

- ``strict_order``: replaying every server's whole journal (its audit and the
  store's tail: a compacted entry in neither fails the check), each key's messages
  were handed out in offset (enqueue) order, in batches taken from the
  head, a batch only after the one before was settled, never two of a key
  out at once; acks and returns matched the batch that was out; and the
  first queue's originals were enqueued per key in source order.
- ``exactly_once_contribution``: the ledger of the messages folded into the
  final result (count and digest, and in full lineage the exact ids) equals
  the source's, minus the dead letters counted out; following ``parents``
  from the final aggregates back to the originals reaches every original
  that was not counted out exactly once.
- ``result_matches_oracle`` (built-in functions only): the result equals
  the sums computed directly over the originals, minus the dead letters
  counted out.
- ``dead_letters``: every dead-lettering the journals record has its
  message in a dead-letter log and vice versa. A dead letter is counted
  out of the ledger unless its output had already reached the result (a
  client that enqueued it and then failed to ack, every time).
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from actors.queue import _records as records
from actors.queue._builtins import add_into, is_builtin, oracle, result_of, sums_of
from actors.queue._history import History
from actors.queue._journal import (
    BatchesAcked,
    BatchesReceived,
    BatchReturned,
    DeadLetter,
    JournalEvent,
    MessageDeadLettered,
    MessagesEnqueued,
)
from actors.queue._ledger import (
    Ledger,
    digest_of_ids,
    merge_ledgers,
    original_digests,
    subtract,
)
from actors.queue._records import FinalEntry
from runtime.scenario import InvariantResult
from runtime.store import without_faults

if TYPE_CHECKING:
    from actors.queue._pipeline import QueuePipeline


def _show(items: list[str], limit: int = 3) -> str:
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


@dataclass
class Checked:
    invariants: list[InvariantResult]
    dead_letters: list[dict[str, object]] = field(default_factory=list)
    ledger: dict[str, object] = field(default_factory=dict)
    counted_out: int = 0


class _KeyTrack:
    __slots__ = ("flight", "last_enqueued", "pending")

    def __init__(self) -> None:
        self.pending: deque[int] = deque()
        self.flight: tuple[int, int, int] | None = None
        """(first offset, attempt, count) of the batch out."""
        self.last_enqueued = -1


Tracks = dict[tuple[str, str], _KeyTrack]


def check_strict_order(history: History, first_queue: str,
                       source_index: dict[str, int]) -> InvariantResult:
    problems: list[str] = list(history.gaps)
    deliveries = 0
    keys: set[tuple[str, str]] = set()
    last_index: dict[str, int] = {}
    for server, events in enumerate(history.events):
        tracks: Tracks = {}
        for e in events:
            deliveries += _replay(server, e, tracks, problems)
            if isinstance(e, MessagesEnqueued) and e.queue == first_queue:
                for m in e.messages:
                    index = source_index.get(m.id, -1)
                    if index < last_index.get(m.key, -1):
                        problems.append(f"original #{index} of key {m.key!r} enqueued "
                                        f"after #{last_index[m.key]}")
                    last_index[m.key] = index
        keys.update(tracks)
    return InvariantResult(
        "strict_order", not problems, "; ".join(problems[:3]) or
        f"{deliveries} deliveries over {len(keys)} (queue, key) pairs: each key in enqueue "
        "order, never two batches out at once")


def _track(tracks: Tracks, queue: str, key: str) -> _KeyTrack:
    track = tracks.get((queue, key))
    if track is None:
        track = tracks[(queue, key)] = _KeyTrack()
    return track


def _replay(server: int, e: JournalEvent, tracks: Tracks, problems: list[str]) -> int:
    """Check one event against the tracks and apply it; the messages it delivered."""
    where = f"server {server} {e.queue}"
    if isinstance(e, MessagesEnqueued):
        for offset, m in enumerate(e.messages, e.first_offset):
            track = _track(tracks, e.queue, m.key)
            if offset <= track.last_enqueued:
                problems.append(f"{where}/{m.key}@{offset}: offset not increasing")
            track.last_enqueued = offset
            track.pending.append(offset)
        return 0
    if isinstance(e, BatchesReceived):
        for key, offset, count, attempt in zip(e.keys, e.offsets, e.counts, e.attempts,
                                               strict=True):
            track = _track(tracks, e.queue, key)
            head = track.pending[0] if track.pending else None
            if track.flight is not None:
                problems.append(f"{where}/{key}@{offset}: delivered while the batch from "
                                f"@{track.flight[0]} was out")
            if head != offset or count > len(track.pending):
                problems.append(f"{where}/{key}@{offset}: a batch of {count} delivered, but "
                                f"the head is @{head} of {len(track.pending)}")
            track.flight = (offset, attempt, count)
        return sum(e.counts)
    if isinstance(e, BatchesAcked):
        for key, offset, count, attempt in zip(e.keys, e.offsets, e.counts, e.attempts,
                                               strict=True):
            track = _track(tracks, e.queue, key)
            flight = track.flight
            if flight is None or flight[:2] != (offset, attempt) or count > flight[2]:
                problems.append(f"{where}/{key}@{offset}: ack of {count} from attempt "
                                f"{attempt}, not out")
            else:
                for _ in range(count):
                    track.pending.popleft()
            track.flight = None
        return 0
    if isinstance(e, BatchReturned):
        track = _track(tracks, e.queue, e.key)
        if track.flight is not None and track.flight[:2] != (e.offset, e.attempt):
            problems.append(f"{where}/{e.key}@{e.offset}: return of attempt {e.attempt}, "
                            "not out")
        track.flight = None
        return 0
    if isinstance(e, MessageDeadLettered):
        track = _track(tracks, e.queue, e.key)
        if track.flight is not None:
            problems.append(f"{where}/{e.key}@{e.offset}: dead-lettered while out")
        if e.offset in track.pending:
            track.pending.remove(e.offset)
        else:
            problems.append(f"{where}/{e.key}@{e.offset}: dead-lettered but not held")
    return 0


def _originals_under(history: History, roots: list[str], problems: list[str]) -> Counter[str]:
    """Originals reached by following ``parents`` down from ``roots``, with multiplicity."""
    found: Counter[str] = Counter()
    stack = list(roots)
    while stack:
        ident = stack.pop()
        stored = history.messages.get(ident)
        if stored is None:
            problems.append(f"message {ident[:12]} is not in any journal")
            continue
        parents = stored.message.parents
        if parents:
            stack.extend(parents)
        else:
            found[ident] += 1
    return found


async def check_pipeline(pipeline: QueuePipeline, history: History) -> Checked:
    config = pipeline.config
    store = without_faults(pipeline.rt.store)
    items = list(pipeline.source_items(pipeline.seed))
    ids = [digest.hex() for digest in original_digests(config.name, 0, len(items))]
    index_of = {ident: i for i, ident in enumerate(ids)}
    first_queue = pipeline.input_queue(0)
    invariants = [check_strict_order(history, first_queue, index_of)]
    entries = [records.decode_final_entry(v.value)
               for _, v in await store.scan(records.final_prefix(config.name))]
    dead = await pipeline.cluster.dead_letters()
    problems: list[str] = []
    reached_roots = [e.message.id for e in entries]
    reached_messages = _reachable(history, reached_roots)
    dead_out = [d for d in dead if d.message.id not in reached_messages]
    checked = Checked(invariants)
    checked.counted_out = len(dead_out)
    invariants.append(_contribution(pipeline, history, ids, index_of, entries, dead_out,
                                    checked, problems))
    if all(is_builtin(s.fn) for s in pipeline.steps) and is_builtin(pipeline.final_fn):
        invariants.append(await _oracle(pipeline, items, dead_out, first_queue))
    invariants.append(_dead_letter_check(history, dead, dead_out, checked, first_queue))
    return checked


def _reachable(history: History, roots: list[str]) -> set[str]:
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        ident = stack.pop()
        if ident in seen:
            continue
        seen.add(ident)
        stored = history.messages.get(ident)
        if stored is not None:
            stack.extend(stored.message.parents)
    return seen


def _contribution(pipeline: QueuePipeline, history: History, ids: list[str],
                  index_of: dict[str, int], entries: list[FinalEntry],
                  dead_out: list[DeadLetter], checked: Checked,
                  problems: list[str]) -> InvariantResult:
    full = pipeline.full
    source = digest_of_ids(ids)
    out_ledger = merge_ledgers((d.message.ledger for d in dead_out), full)
    expected = subtract(source, out_ledger)
    final = merge_ledgers((e.message.ledger for e in entries), full)
    checked.ledger = {
        "source": {"count": source[0], "digest": source[1].hex()},
        "final": {"count": final.count, "digest": final.digest_hex},
        "dead_letters_counted_out": {"count": out_ledger.count, "digest": out_ledger.digest_hex},
        "mode": pipeline.config.lineage,
    }
    if (final.count, final.digest) != expected:
        problems.append(f"final ledger count {final.count} digest {final.digest_hex[:12]}… "
                        f"!= source minus dead letters: count {expected[0]} digest "
                        f"{expected[1].hex()[:12]}…")
    walked = _originals_under(history, [e.message.id for e in entries], problems)
    dropped = _originals_under(history, [d.message.id for d in dead_out], problems)
    _compare("following parents", walked, Counter(ids) - dropped, index_of, problems)
    if full:
        exact = Counter(final.originals or [])
        _compare("full-lineage ids", exact, Counter(ids) - Counter(
            i for d in dead_out for i in (d.message.ledger.originals or [])), index_of, problems)
    return InvariantResult(
        "exactly_once_contribution", not problems, "; ".join(problems[:3]) or
        f"final ledger of {len(entries)} aggregates: count {final.count} = {source[0]} "
        f"originals - {out_ledger.count} counted out as dead letters; digest "
        f"{final.digest_hex[:16]}… matches" + (
            "; exact ids match" if full else "") + "; every original reached once")


def _compare(how: str, got: Counter[str], want: Counter[str], index_of: dict[str, int],
             problems: list[str]) -> None:
    missing = [f"#{index_of.get(i, '?')}" for i in sorted(want - got)]
    extra = [f"#{index_of.get(i, '?')} x{n}" for i, n in sorted((got - want).items())]
    if missing:
        problems.append(f"{how}: {len(missing)} originals missing: {_show(missing)}")
    if extra:
        problems.append(f"{how}: {len(extra)} originals counted more than once: "
                        f"{_show(extra)}")


async def _oracle(pipeline: QueuePipeline, items: list[tuple[str, bytes]],
                  dead_out: list[DeadLetter], first_queue: str) -> InvariantResult:
    try:
        total = oracle(items)
        for d in dead_out:
            add_into(total, sums_of(d.message.key, d.message.body), sign=-1)
    except ValueError as exc:
        return InvariantResult("result_matches_oracle", False,
                               f"the source's bodies are not integers: {exc}")
    want = result_of(total)
    got = await pipeline.read_result()
    if got == want:
        return InvariantResult("result_matches_oracle", True,
                               f"sums of {want['keys']} keys, total {want['total']}, equal a "
                               f"direct computation over {len(items)} originals"
                               + (f" minus {len(dead_out)} dead letters" if dead_out else ""))
    detail = "no result was folded" if not isinstance(got, dict) else (
        f"total {got.get('total')} != {want['total']}, keys {got.get('keys')} != {want['keys']}")
    return InvariantResult("result_matches_oracle", False, detail)


def _dead_letter_check(history: History, dead: list[DeadLetter], dead_out: list[DeadLetter],
                       checked: Checked, first_queue: str) -> InvariantResult:
    journaled = Counter(
        (server, e.queue, e.offset)
        for server, events in enumerate(history.events)
        for e in events if isinstance(e, MessageDeadLettered))
    logged = Counter((d.server, d.queue, d.offset) for d in dead)
    out_ids = {d.message.id for d in dead_out}
    for d in dead:
        checked.dead_letters.append({
            "queue": d.queue, "key": d.message.key, "server": d.server, "offset": d.offset,
            "id": d.message.id, "receives": d.receives, "reason": d.reason,
            "originals": d.message.ledger.count,
            "counted_out": d.message.id in out_ids,
        })
    problems = []
    if journaled != logged:
        problems.append(f"journals record {sum(journaled.values())} dead-letterings, "
                        f"dead-letter logs hold {sum(logged.values())}")
    counted = sum(d.message.ledger.count for d in dead_out)
    return InvariantResult(
        "dead_letters", not problems, "; ".join(problems) or
        f"{len(dead)} dead letters listed; {len(dead_out)} counted out of the ledger "
        f"({counted} originals)" + (
            f", {len(dead) - len(dead_out)} had already reached the result"
            if len(dead) != len(dead_out) else ""))


def ledger_total(ledgers: list[Ledger]) -> Ledger:
    return merge_ledgers(ledgers, full=False)
