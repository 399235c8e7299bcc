"""A batch given back with its head untried goes out again under the same receipt
(same head offset, same attempt): what the server remembers of the earlier
delivery must not act on the later one.

- The earlier delivery's visibility timeout passing does not take the later
  delivery back before its own timeout.
- The earlier holder restarting does not take back a later delivery held by
  another client.
"""

from __future__ import annotations

from actors.queue import QueuedMessage
from actors.queue._journal import BatchReturned, JournalEvent
from actors.queue._ledger import Ledger
from actors.queue._messages import Settlement, Taken
from actors.queue._settings import ServerSettings
from tests.queue_helpers.state import JournaledState


class _Server(JournaledState):
    def enqueue(self, ids: list[str], key: str) -> None:
        messages = [QueuedMessage(i, key, i.encode(), Ledger()) for i in ids]
        self.commit(self.state.plan_enqueue("q", messages)[0])

    def receive(self, holder: str) -> Taken:
        events, taken = self.state.plan_receive("q", 10, per_key=2, holder=holder)
        self.commit(events)
        assert taken is not None
        return taken

    def settle(self, settlement: Settlement) -> list[JournalEvent]:
        events, refused, _ = self.state.plan_settle([settlement])
        assert not refused
        self.commit(events)
        return events


def _returned(events: list[JournalEvent]) -> list[str]:
    """The keys whose batch ``events`` take back (and nothing else happens)."""
    assert all(isinstance(e, BatchReturned) for e in events)
    return [e.key for e in events if isinstance(e, BatchReturned)]


def _released_with_its_head_untried(holder: str) -> tuple[_Server, Taken, Taken]:
    """a, b out to h1 at 100 (timeout 30); h1 gives them back at 110 naming b (a reduce
    client's ``Settlement(receipt, 0, index)``); a, b out again at 111 to ``holder``."""
    s = _Server(ServerSettings(visibility_timeout=30.0, max_receives=5))
    s.enqueue(["a", "b"], "k")
    first = s.receive("h1")
    s.at = 110.0
    s.settle(Settlement(first.receipt(0), acked=0, failed=1, reason="bad"))
    s.at = 111.0
    second = s.receive(holder)
    assert second.receipt(0) == first.receipt(0)  # the same receipt: a untried
    return s, first, second


def test_an_earlier_deliverys_timeout_does_not_take_back_a_later_one() -> None:
    s, _, _ = _released_with_its_head_untried("h2")
    s.at = 131.0  # the first delivery's deadline has passed, not the second's
    assert s.state.plan_expire() == []
    assert s.state.queues["q"].keys["k"].flight == 2
    s.at = 141.0  # the second's has
    assert _returned(s.state.plan_expire()) == ["k"]


def test_an_earlier_holder_restarting_does_not_take_back_another_holders_batch() -> None:
    s, _, _ = _released_with_its_head_untried("h2")
    assert s.state.plan_holder_restarted("h1") == []
    assert _returned(s.state.plan_holder_restarted("h2")) == ["k"]
