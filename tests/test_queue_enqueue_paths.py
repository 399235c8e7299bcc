"""An enqueue's fast paths keep the queue's contracts, at exact simulated-time boundaries.

A server's state is driven here without I/O: a list stands for the journal,
``_Server.commit`` journals then applies (as ``QueueServer._commit`` does) and
``_Server.recover`` replays it into a fresh state (as ``QueueServer.recover``).

- Dedup window: an id is a duplicate through ``at + window`` inclusive and
  fresh just after, counted again from a re-enqueue; ids replayed by a
  recovery count from the recovery, also when one id is in two entries; a
  checkpoint never lets a truncation lose an id still in the window; a
  window whose stamps step back (a wall clock set back) never forgets an id
  before its own stamp leaves the window.
- The ids an enqueue's plan read are applied only with that event: a plan
  that is never applied adds nothing, a replayed copy reads its own ids.
- Readiness: after every applied event, a key that could go out is in the
  ready index, and on a windowed queue a key holding a whole window is in
  the full index (what ``QueueState.make_ready`` would do: the inlined
  copies in ``_apply_enqueued`` and ``_apply_acked`` must do the same).
"""

from __future__ import annotations

import random

from actors.queue import QueuedMessage
from actors.queue._dedup import DedupWindow
from actors.queue._journal import (
    JournalEntry,
    MessagesEnqueued,
    decode_entry,
    encode,
)
from actors.queue._keys import QueueState
from actors.queue._ledger import Ledger
from actors.queue._messages import Settlement, WindowPolicy, settle_taken
from actors.queue._settings import ServerSettings
from tests.queue_helpers.state import JournaledState


class _Server(JournaledState):
    """A ``ServerState`` on a hand-set clock, with a journal kept in a list."""

    def enqueue(self, *ids: str, queue: str = "q", key: str | None = None) -> tuple[int, int]:
        """(accepted, duplicates) of one enqueue request of ``ids``."""
        events, accepted, duplicates = self.state.plan_enqueue(queue, _messages(ids, key))
        self.commit(events)
        return accepted, duplicates


def _messages(ids: tuple[str, ...] | list[str], key: str | None = None) -> list[QueuedMessage]:
    return [QueuedMessage(i, key if key is not None else f"k{i}", b"x", Ledger()) for i in ids]


# -- dedup window ------------------------------------------------------------------


def test_an_id_is_a_duplicate_through_the_window_end_and_fresh_just_after() -> None:
    s = _Server(ServerSettings(dedup_window=10.0))
    assert s.enqueue("a", "b") == (2, 0)
    s.at = 110.0  # at the horizon exactly: still inside
    assert s.enqueue("a") == (0, 1)
    s.at = 110.000001
    assert s.enqueue("b", "b", "a", "c", "c") == (3, 2)  # back, once each
    s.at = 120.000001  # the re-enqueue counts from itself
    assert s.enqueue("a", "b", "c") == (0, 3)
    s.at = 120.000002
    assert s.enqueue("c", "a", "b") == (3, 0)


def test_a_recovery_replaying_an_id_from_two_entries_counts_it_from_the_recovery() -> None:
    s = _Server(ServerSettings(dedup_window=10.0))
    s.enqueue("a", "b")
    s.at = 111.0  # "a" left the window and came back: it is in two entries
    s.enqueue("a")
    s.at = 150.0
    s.recover(read=0.5)  # the entries are stamped 150.0 and 150.5 (the recovery)
    s.at = 160.0
    assert s.enqueue("a", "b") == (0, 2)
    s.at = 160.000001  # "b" leaves with the first entry; "a" was renewed by the second
    assert s.enqueue("b", "a") == (1, 1)
    s.at = 160.5
    assert s.enqueue("a") == (0, 1)
    s.at = 160.500001
    assert s.enqueue("a") == (1, 0)
    s.at = 170.25  # each counts from its re-enqueue: "b" from 160.000001, "a" from 160.500001
    assert s.enqueue("b", "a") == (1, 1)


def test_a_checkpoint_after_a_renewal_keeps_every_entry_an_id_in_the_window_needs() -> None:
    s = _Server(ServerSettings(dedup_window=10.0))
    s.enqueue("a", key="k")  # seq 0
    s.at = 111.0
    s.enqueue("a", key="k")  # seq 1: "a" again, after it left
    s.at = 112.0
    s.recover()  # seq 0 and 1 both stamped 112.0: "a" renewed by seq 1
    s.at = 113.0
    s.enqueue("b", key="k")  # seq 2, stamped 113.0
    s.at = 122.0
    assert s.state.checkpoint(3).from_seq == 0  # the messages are still held
    # with nothing held, what the window needs decides: seq 0 and 1 until 122.0
    held = s.state.queues["q"].keys.pop("k")
    assert s.state.checkpoint(3).from_seq == 0
    s.at = 122.000001
    assert s.state.checkpoint(3).from_seq == 2
    s.state.queues["q"].keys["k"] = held
    s.recover(from_seq=2)  # truncated before seq 2: "a" is gone, "b" stays
    s.at = 123.0  # "b" now stamped 122.000001 (the recovery)
    assert s.enqueue("a", "b") == (1, 1)


def test_a_window_whose_stamps_step_back_keeps_an_id_until_its_own_stamp_leaves() -> None:
    window = DedupWindow(10.0)
    window.add({"a"}, 100.0, 1)
    window.add({"x"}, 110.0, 2)  # a wall clock set back after this one
    window.add({"a"}, 100.0, 3)  # a replay: "a" again, stamped earlier than "x"
    window.prune(110.5)
    window.add({"a"}, 115.0, 4)  # "a" enqueued again at 115.0
    window.prune(120.5)  # the chunks of 110.0 and 100.0 leave; "a" is stamped 115.0
    assert "a" in window
    window.prune(125.0)
    assert "a" in window
    window.prune(125.000001)
    assert "a" not in window and len(window) == 0 and window.oldest_seq() is None


def test_an_enqueue_applies_only_its_own_planned_ids() -> None:
    s = _Server(ServerSettings(dedup_window=10.0))
    s.enqueue("a")
    unwritten, _, _ = s.state.plan_enqueue("q", _messages(["a", "b", "c"]))  # slow path
    assert isinstance(unwritten[0], MessagesEnqueued)
    assert [m.id for m in unwritten[0].messages] == ["b", "c"]
    assert s.state.plan_enqueue("q", _messages(["a"]))[0] == []  # no event: nothing cached
    # an event not planned here (as a tail replays it) while the unwritten plan is cached
    s.state.apply([MessagesEnqueued("q", s.state.next_offset, s.at, _messages(["f"]))], 5)
    assert s.enqueue("b", "c", "f") == (2, 1)
    unwritten, _, _ = s.state.plan_enqueue("q", _messages(["g", "h"]))  # fast path
    copy = decode_entry(encode(JournalEntry(unwritten))).events  # equal, not the same
    s.state.apply(copy, 9)
    s.commit(s.state.plan_enqueue("q", _messages(["i", "g"]))[0])
    s.at = 105.0
    assert s.enqueue("a", "b", "c", "f", "g", "h", "i", "j") == (1, 7)


# -- readiness -----------------------------------------------------------------------


def _assert_indexed(q: QueueState) -> None:
    ready = {id(k) for k in q.ready}
    full = {id(k) for k in q.full}
    for k in q.keys.values():
        if k.deliverable:
            assert k.queued and id(k) in ready, k.name
            if q.whole(k):
                assert k.in_full and id(k) in full, k.name
        assert not k.queued or id(k) in ready, k.name
        assert not k.in_full or id(k) in full, k.name


def _drive(window: WindowPolicy | None, seed: int, steps: int = 400) -> int:
    """Random enqueues, receives, acks, failures, releases and expiries on one queue;
    the indexes are checked after each; how many batches went out."""
    rng = random.Random(seed)
    windows = {"q": window} if window is not None else {}
    s = _Server(ServerSettings(visibility_timeout=5.0, max_receives=3, dedup_window=60.0,
                               windows=windows))
    out = []
    sent = batches = 0
    for _ in range(steps):
        op = rng.random()
        if op < 0.4:
            n = rng.randint(1, 6)
            ids = [f"m{sent + i}" for i in range(n)]
            sent += n
            keys = [f"k{rng.randint(0, 4)}" for _ in ids]
            msgs = [QueuedMessage(i, key, b"x", Ledger()) for i, key in zip(ids, keys, strict=True)]
            events, _, _ = s.state.plan_enqueue("q", msgs)
            s.commit(events)
        elif op < 0.65:
            events, taken = s.state.plan_receive("q", rng.randint(1, 8), rng.randint(1, 3))
            s.commit(events)
            if taken is not None:
                out.append(taken)
                batches += len(taken.keys)
        elif op < 0.85 and out:
            taken = out.pop(rng.randrange(len(out)))
            how = rng.random()
            if how < 0.6:
                events, _, _ = s.state.plan_settle([], settle_taken(taken))
            else:
                settlements = []
                for i, count in enumerate(taken.counts):
                    acked = rng.randint(0, count - 1) if count > 1 else 0
                    failed = acked if how < 0.8 else -1
                    settlements.append(Settlement(taken.receipt(i), acked, failed, "boom"))
                events, _, _ = s.state.plan_settle(settlements)
            s.commit(events)
        elif op < 0.95:
            s.at += rng.choice([0.5, 1.0, 5.0])
            s.commit(s.state.plan_expire())
        elif window is not None and rng.random() < 0.3:
            s.commit(s.state.plan_seal("q"))
        q = s.state.queues.get("q")
        if q is not None:
            _assert_indexed(q)
    return batches


def test_a_plain_queue_indexes_every_key_that_could_go_out() -> None:
    for seed in range(6):
        assert _drive(None, seed) > 50


def test_a_windowed_queue_indexes_every_key_that_could_go_out_and_every_whole_one() -> None:
    for seed in range(6):
        assert _drive(WindowPolicy(3, max_age=2.0), seed) > 20
        assert _drive(WindowPolicy(2), seed + 100) > 0
