"""The queue server's per-message shortcuts keep their contracts.

``DedupWindow`` remembers ids in chunks (one per journaled enqueue): an id
stays exactly until its stamp falls before the horizon, a chunk pruned
early never takes an id that a later chunk added again, and the oldest
journal entry still needed is the oldest chunk's. A server checks the
placement of every key it is sent (in one pass) and refuses a misrouted
enqueue, naming the key and its owner, without storing any of it.
"""

from __future__ import annotations

import pytest

from actors.queue import QueuedMessage
from actors.queue._dedup import DedupWindow
from actors.queue._ledger import Ledger
from actors.queue._messages import Enqueue
from actors.queue._server import MisroutedMessage
from actors.queue._settings import ServerSettings
from actors.queue._state import ServerState
from tests.queue_helpers import drain, open_cluster, sim
from tests.test_queue_server import keys_on


def test_a_dedup_window_keeps_an_id_until_its_stamp_leaves_the_window_exactly() -> None:
    window = DedupWindow(10.0)
    window.add(["a", "b"], 100.0, 7)
    window.add(["c"], 105.0, 9)
    window.prune(110.0)  # horizon 100.0: stamped at the horizon, still inside
    assert "a" in window and "b" in window and window.oldest_seq() == 7
    window.prune(110.000001)
    assert "a" not in window and "b" not in window and "c" in window
    assert window.oldest_seq() == 9 and len(window) == 1
    window.prune(115.000001)
    assert len(window) == 0 and window.oldest_seq() is None


def test_pruning_a_chunk_leaves_an_id_that_a_later_chunk_added_again() -> None:
    window = DedupWindow(10.0)
    window.add(["a"], 100.0, 1)
    window.add(["a", "b"], 104.0, 2)  # replayed after a recovery: "a" again, later
    window.prune(112.0)
    assert "a" in window and "b" in window and window.oldest_seq() == 2
    window.prune(114.5)
    assert "a" not in window


def test_an_id_added_by_three_chunks_stays_until_the_latest_leaves_the_window() -> None:
    window = DedupWindow(10.0)
    window.add({"a", "b"}, 100.0, 1)
    window.add({"a"}, 102.0, 2)  # a replay: "a" in three entries
    window.add({"a", "c"}, 104.0, 3)
    window.prune(113.0)  # the first two chunks leave; "a" is stamped 104.0
    assert "a" in window and "b" not in window and window.oldest_seq() == 3
    window.prune(114.0)  # horizon 104.0: still inside
    assert "a" in window and "c" in window
    window.prune(114.000001)
    assert len(window) == 0 and window.oldest_seq() is None
    window.add({"a"}, 120.0, 4)  # back after it left: one chunk, one stamp
    window.prune(130.000001)
    assert "a" not in window


def _messages(*ids: str) -> list[QueuedMessage]:
    return [QueuedMessage(i, f"k{i}", b"x", Ledger()) for i in ids]


def test_applying_an_enqueue_adds_its_own_fresh_ids_whatever_was_planned_before() -> None:
    """The ids an enqueue's plan read are reused when that event is applied, and only
    then: a plan never applied (its write failed) leaves nothing in the window, and a
    replayed event (decoded, so not the planned object) reads its own ids."""
    state = ServerState(0, ServerSettings(dedup_window=10.0), lambda: 0.0, lambda: 100.0)
    unwritten, _, _ = state.plan_enqueue("q", _messages("a", "b"))
    events, accepted, duplicates = state.plan_enqueue("q", _messages("c", "c", "d"))
    assert (accepted, duplicates) == (2, 1)
    state.apply(events, 1)
    assert not state.plan_enqueue("q", _messages("a"))[2]  # "a" was never written
    assert state.plan_enqueue("q", _messages("c", "d"))[1:] == (0, 2)
    state.apply(unwritten, 2, live=False)  # as a replay would: its ids come in now
    assert state.plan_enqueue("q", _messages("a", "b", "e"))[1:] == (1, 2)


def test_a_server_refuses_an_enqueue_holding_a_key_it_does_not_own() -> None:
    async def main() -> None:
        async with open_cluster(servers=2) as (_rt, cluster):
            mine, theirs = keys_on(cluster, 0, 1)[0], keys_on(cluster, 1, 1)[0]
            messages = [QueuedMessage(f"id-{key}", key, b"x", Ledger()) for key in (mine, theirs)]
            with pytest.raises(MisroutedMessage, match=f"key '{theirs}' of queue 'q' belongs "
                                                       "to server 1"):
                await cluster.servers[0].ask(Enqueue("q", messages))
            assert await drain(cluster, "q") == {}  # nothing of the request was stored
            assert (await cluster.enqueue("q", messages)).accepted == 2

    sim(main)
