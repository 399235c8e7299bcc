"""A key's messages kept in columns (``KeyState``): what the server guarantees of them.

- A hot key drained in small batches hands its messages out in offset
  order, each once, while the columns are cut behind the head (what a key
  keeps beyond what it holds stays bounded), and a replay of the journal
  ends in the same state at every step.
- A failing member in the middle of a batch is charged alone and
  dead-lettered alone; the members around it keep their own receive counts
  (the columns stay aligned when one member leaves from the middle), live
  and after a replay.
"""

from __future__ import annotations

from actors.queue import QueuedMessage
from actors.queue._journal import BatchReturned, JournalEvent, MessageDeadLettered
from actors.queue._keys import KeyState
from actors.queue._ledger import Ledger
from actors.queue._messages import Settlement, Taken, settle_taken
from actors.queue._settings import ServerSettings
from actors.queue._state import ServerState
from tests.queue_helpers.state import JournaledState


class _Server(JournaledState):
    """Requests of one client, each planned, journaled and applied at once."""

    def enqueue(self, ids: list[str], keys: list[str]) -> None:
        messages = [QueuedMessage(i, k, i.encode(), Ledger()) for i, k in zip(ids, keys,
                                                                               strict=True)]
        self.commit(self.state.plan_enqueue("q", messages)[0])

    def receive(self, per_key: int) -> Taken | None:
        events, taken = self.state.plan_receive("q", 1000, per_key)
        self.commit(events)
        return taken

    def settle(self, settlements: list[Settlement]) -> list[JournalEvent]:
        events, refused, _ = self.state.plan_settle(settlements)
        assert not refused
        self.commit(events)
        return events


def _view(state: ServerState, key: str) -> list[tuple[int, bytes, int]]:
    """(offset, body, receives) of each message ``key`` holds."""
    k = state.queues["q"].keys.get(key)
    if k is None:
        return []
    found = []
    for offset in k.offsets[k.head:]:
        held = k.find(offset)
        assert held is not None and held.offset == offset
        found.append((offset, held.message.body, held.receives))
    return found


def _key(state: ServerState, key: str) -> KeyState:
    return state.queues["q"].keys[key]


def test_a_hot_key_drained_in_small_batches_goes_out_in_order_and_keeps_little() -> None:
    s = _Server(ServerSettings(visibility_timeout=5.0, max_receives=3))
    ids = [f"m{i}" for i in range(600)]
    s.enqueue(ids, ["hot" if i % 3 else "cold" for i in range(600)])  # offsets not dense
    out: list[bytes] = []
    while (taken := s.receive(per_key=7)) is not None:
        out.extend(m.body for m, key in zip(taken.messages, (
            key for key, count in zip(taken.keys, taken.counts, strict=True)
            for _ in range(count)), strict=True) if key == "hot")
        s.commit(s.state.plan_settle([], settle_taken(taken))[0])
        if "hot" in s.state.queues["q"].keys:
            hot = _key(s.state, "hot")
            assert len(hot.offsets) <= 2 * hot.held + 64 + 7  # the columns are cut
            assert _view(s.replayed(), "hot") == _view(s.state, "hot")
    assert out == [f"m{i}".encode() for i in range(600) if i % 3]
    assert s.state.depth("q").pending == 0 and s.state.depth("q").in_flight == 0
    hot = _key(s.state, "hot")
    assert (hot.offsets, hot.messages, hot.stamps, hot.receives, hot.head) == ([], [], [], [],
                                                                               0)
    assert _view(s.replayed(), "hot") == []


def test_a_failing_member_in_the_middle_leaves_alone_and_the_others_keep_their_counts(
) -> None:
    s = _Server(ServerSettings(visibility_timeout=5.0, max_receives=2))
    s.enqueue(["a", "b", "c", "d", "e"], ["k"] * 5)
    first = s.receive(per_key=4)  # a, b, c, d: delivery 1
    assert first is not None and first.attempts == [1] and first.counts == [4]
    # a done, c fails: b and d were not tried, so that delivery does not count for them
    events = s.settle([Settlement(first.receipt(0), acked=1, failed=2, reason="bad")])
    assert not any(isinstance(e, MessageDeadLettered) for e in events)
    assert _view(s.state, "k") == [(1, b"b", 0), (2, b"c", 1), (3, b"d", 0), (4, b"e", 0)]
    second = s.receive(per_key=4)  # b, c, d, e
    assert second is not None and second.attempts == [1]
    assert [m.body for m in second.messages] == [b"b", b"c", b"d", b"e"]
    assert _view(s.state, "k") == [(1, b"b", 1), (2, b"c", 2), (3, b"d", 1), (4, b"e", 1)]
    events = s.settle([Settlement(second.receipt(0), acked=0, failed=1, reason="bad")])
    returned = [e for e in events if isinstance(e, BatchReturned)]
    dead = [e for e in events if isinstance(e, MessageDeadLettered)]
    assert [e.untried for e in returned] == [[1, 3, 4]]
    assert [(e.offset, e.reason) for e in dead] == [(2, "released after 2 receives: bad")]
    assert _view(s.state, "k") == [(1, b"b", 0), (3, b"d", 0), (4, b"e", 0)]
    assert _view(s.replayed(), "k") == _view(s.state, "k")
    assert s.state.held("q", "k", 2) is None
    assert s.state.depth("q").dead == 1
    third = s.receive(per_key=4)  # b, d, e: delivery 1 for each of them
    assert third is not None and third.attempts == [1] and third.message_offsets == [1, 3, 4]
    s.commit(s.state.plan_settle([], settle_taken(third))[0])
    assert _view(s.state, "k") == [] and _view(s.replayed(), "k") == []
