"""Queue server semantics through ``QueueCluster``, in simulated time, on each store.

Per key: strict enqueue order, at most one message out; other keys go on
while one is out (a hot key blocks nobody). Delivery: the visibility
timeout hands a message out again (not before its deadline), still first
in its key; a late or stale receipt is refused; a release makes it visible
at once; after ``max_receives`` it is dead-lettered (listed, with the
reason) and its key moves on. Dedup drops an id seen within the window
and accepts it again after.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from actors.queue import Delivery, QueueCluster, QueueDepth
from tests.queue_helpers import bodies, drain, open_cluster, sim


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Every test here runs on each store backend."""
    if request.param == "memory":
        return "memory://"
    return f"sqlite:///{tmp_path_factory.mktemp('queue')}/state.db"


def keys_on(cluster: QueueCluster, server: int, count: int, prefix: str = "k") -> list[str]:
    """``count`` keys that rendezvous placement puts on ``server``."""
    found: list[str] = []
    names: Iterator[str] = (f"{prefix}{i}" for i in range(10_000))
    while len(found) < count:
        name = next(names)
        if cluster.server_of(name) == server:
            found.append(name)
    return found


def only(deliveries: list[Delivery], key: str) -> Delivery:
    matching = [d for d in deliveries if d.message.key == key]
    assert len(matching) == 1, deliveries
    return matching[0]


def test_per_key_enqueue_order_and_one_in_flight_per_key(store: str) -> None:
    async def main() -> None:
        async with open_cluster(store) as (_rt, cluster):
            await cluster.send("q", [("a", b"a1"), ("b", b"b1"), ("a", b"a2"), ("a", b"a3"),
                                     ("b", b"b2")])
            first = await cluster.receive("q", per_server=10)
            assert bodies(first) == {"a": b"a1", "b": b"b1"}
            # both keys have their head out: nothing else of them is handed out
            assert await cluster.receive("q", per_server=10) == []
            assert await cluster.depth("q") == QueueDepth(pending=3, in_flight=2, dead=0)
            await cluster.ack([only(first, "a").receipt])
            second = await cluster.receive("q", per_server=10)
            assert bodies(second) == {"a": b"a2"}  # b1 is still out
            await cluster.ack([d.receipt for d in first + second if d.message.key == "b"
                               or d.message.body == b"a2"])
            assert await drain(cluster, "q") == {"a": [b"a3"], "b": [b"b2"]}
            assert await cluster.depth("q") == QueueDepth(0, 0, 0)

    sim(main)


def test_many_keys_drain_each_in_enqueue_order(store: str) -> None:
    async def main() -> None:
        async with open_cluster(store, servers=3) as (_rt, cluster):
            sent = [(f"key-{i % 7}", b"%d" % i) for i in range(120)]
            await cluster.send("q", sent)
            taken = await drain(cluster, "q")
            want: dict[str, list[bytes]] = {}
            for key, body in sent:
                want.setdefault(key, []).append(body)
            assert taken == want

    sim(main)


def test_a_hot_key_in_flight_does_not_block_other_keys_on_its_server(store: str) -> None:
    async def main() -> None:
        async with open_cluster(store, servers=2) as (_rt, cluster):
            hot, *others = keys_on(cluster, 0, 4)
            await cluster.send("q", [(hot, b"%d" % i) for i in range(200)])
            await cluster.send("q", [(k, b"%d" % i) for i in range(5) for k in others])
            first = await cluster.receive("q", per_server=10)
            assert set(bodies(first)) == {hot, *others}
            held = only(first, hot)  # the hot key's head stays out throughout
            await cluster.ack([d.receipt for d in first if d is not held])
            rest = await drain(cluster, "q", empty=False)
            assert rest == {k: [b"1", b"2", b"3", b"4"] for k in others}
            depth = await cluster.depth("q")
            assert depth == QueueDepth(pending=199, in_flight=1, dead=0)
            await cluster.ack([held.receipt])
            assert (await drain(cluster, "q"))[hot] == [b"%d" % i for i in range(1, 200)]

    sim(main)


def test_visibility_timeout_hands_the_head_out_again_not_before_and_first_in_its_key(
    store: str,
) -> None:
    async def main() -> None:
        async with open_cluster(store, visibility_timeout=5.0) as (rt, cluster):
            await cluster.send("q", [("a", b"a1"), ("a", b"a2")])
            start = rt.now()
            (first,) = await cluster.receive("q")
            await rt.sleep(start + 4.999 - rt.now())
            assert await cluster.receive("q") == []  # still invisible just before the deadline
            await rt.sleep(start + 5.001 - rt.now())
            # another client (any caller) gets the same head again, not a2
            (again,) = await cluster.receive("q")
            assert again.message == first.message
            assert again.receipt.attempt == 2 and again.receipt.offset == first.receipt.offset
            assert await cluster.receive("q") == []  # still one out per key
            assert (await cluster.ack([again.receipt])).acked == 1
            assert await drain(cluster, "q") == {"a": [b"a2"]}

    sim(main)


def test_an_ack_before_the_deadline_counts_and_one_at_or_after_it_is_refused(
    store: str,
) -> None:
    async def main() -> None:
        async with open_cluster(store, visibility_timeout=5.0) as (rt, cluster):
            await cluster.send("q", [("a", b"a1"), ("b", b"b1"), ("c", b"c1")])
            start = rt.now()
            got = await cluster.receive("q")
            await rt.sleep(start + 4.999 - rt.now())
            early = await cluster.ack([only(got, "a").receipt])
            assert early.acked == 1 and early.refused == []
            await rt.sleep(start + 5.0 - rt.now())
            assert rt.now() == start + 5.0
            at_deadline = await cluster.ack([only(got, "b").receipt])
            assert at_deadline.acked == 0 and at_deadline.refused == [only(got, "b").receipt]
            await rt.sleep(1.0)
            late = await cluster.ack([only(got, "c").receipt])
            assert late.acked == 0 and late.refused == [only(got, "c").receipt]
            # the refused ones were not removed: they are handed out again
            assert await drain(cluster, "q") == {"b": [b"b1"], "c": [b"c1"]}

    sim(main)


def test_a_stale_receipt_is_refused_after_the_message_was_handed_out_again(
    store: str,
) -> None:
    async def main() -> None:
        async with open_cluster(store, visibility_timeout=1.0) as (rt, cluster):
            await cluster.send("q", [("a", b"a1"), ("a", b"a2")])
            (first,) = await cluster.receive("q")
            await rt.sleep(1.01)
            (second,) = await cluster.receive("q")
            # within the new delivery's timeout, the first delivery's receipt is stale
            stale = await cluster.ack([first.receipt])
            assert stale.acked == 0 and stale.refused == [first.receipt]
            assert (await cluster.release([first.receipt])).refused == [first.receipt]
            assert (await cluster.ack([second.receipt])).acked == 1
            # acking the same receipt twice: the second is refused
            assert (await cluster.ack([second.receipt])).refused == [second.receipt]
            assert await drain(cluster, "q") == {"a": [b"a2"]}

    sim(main)


def test_a_release_makes_the_message_visible_again_at_once(store: str) -> None:
    async def main() -> None:
        async with open_cluster(store, visibility_timeout=30.0) as (rt, cluster):
            await cluster.send("q", [("a", b"a1"), ("a", b"a2")])
            (first,) = await cluster.receive("q")
            released = await cluster.release([first.receipt], "could not process")
            assert released.acked == 1 and released.refused == []
            at = rt.now()
            (again,) = await cluster.receive("q")
            assert rt.now() == at
            assert again.message.body == b"a1" and again.receipt.attempt == 2

    sim(main)


def test_after_max_receives_a_released_message_is_dead_lettered_and_its_key_moves_on(
    store: str,
) -> None:
    async def main() -> None:
        async with open_cluster(store, max_receives=3) as (_rt, cluster):
            await cluster.send("q", [("a", b"poison"), ("a", b"a2"), ("b", b"b1")])
            for attempt in (1, 2, 3):
                got = await cluster.receive("q")
                head = only(got, "a")
                assert head.message.body == b"poison" and head.receipt.attempt == attempt
                await cluster.release([head.receipt], "ValueError: bad body")
                await cluster.ack([d.receipt for d in got if d is not head])
            assert await cluster.depth("q") == QueueDepth(pending=1, in_flight=0, dead=1)
            (letter,) = await cluster.dead_letters("q")
            assert letter.message.body == b"poison" and letter.message.key == "a"
            assert letter.receives == 3 and letter.queue == "q"
            assert "released after 3 receives" in letter.reason
            assert "ValueError: bad body" in letter.reason
            assert await cluster.dead_letters("other") == []
            assert await drain(cluster, "q") == {"a": [b"a2"]}

    sim(main)


def test_a_message_never_acked_is_dead_lettered_after_max_receives_timeouts(
    store: str,
) -> None:
    async def main() -> None:
        async with open_cluster(store, max_receives=2, visibility_timeout=1.0) as (rt, cluster):
            await cluster.send("q", [("a", b"a1"), ("a", b"a2")])
            for attempt in (1, 2):
                (got,) = await cluster.receive("q")
                assert got.message.body == b"a1" and got.receipt.attempt == attempt
                await rt.sleep(1.01)
            (letter,) = await cluster.dead_letters()
            assert letter.message.body == b"a1"
            assert letter.reason == "visibility timeout after 2 receives"
            (nxt,) = await cluster.receive("q")
            assert nxt.message.body == b"a2" and nxt.receipt.attempt == 1

    sim(main)


def test_dedup_drops_an_id_seen_within_the_window_and_accepts_it_after(store: str) -> None:
    async def main() -> None:
        async with open_cluster(store, dedup_window=60.0) as (rt, cluster):
            first = await cluster.send("q", [("a", b"x"), ("a", b"y")], dedup_ids=["id-1", "id-2"])
            assert (first.accepted, first.duplicates) == (2, 0)
            # the same id again, even with another body, and twice in one batch
            again = await cluster.send("q", [("a", b"other"), ("b", b"z"), ("b", b"z2")],
                                       dedup_ids=["id-1", "id-3", "id-3"])
            assert (again.accepted, again.duplicates) == (1, 2)
            assert await drain(cluster, "q") == {"a": [b"x", b"y"], "b": [b"z"]}
            await rt.sleep(59.0)
            # acked long ago, but still within the window: dropped
            assert (await cluster.send("q", [("a", b"x")], dedup_ids=["id-1"])).duplicates == 1
            await rt.sleep(2.0)
            after = await cluster.send("q", [("a", b"x")], dedup_ids=["id-1"])
            assert (after.accepted, after.duplicates) == (1, 0)
            assert await drain(cluster, "q") == {"a": [b"x"]}

    sim(main)


def test_the_default_dedup_id_is_the_content_so_an_identical_send_is_dropped(store: str) -> None:
    async def main() -> None:
        async with open_cluster(store) as (_rt, cluster):
            assert (await cluster.send("q", [("a", b"1")])).accepted == 1
            assert (await cluster.send("q", [("a", b"1")])).duplicates == 1
            assert (await cluster.send("q", [("a", b"2")])).accepted == 1
            assert (await cluster.send("other", [("a", b"1")])).accepted == 1

    sim(main)


def test_dedup_ids_are_scoped_per_queue_as_in_sqs(store: str) -> None:
    """One id in two queues of one server is two messages; a restart keeps the scope."""
    async def main() -> None:
        async with open_cluster(store, servers=1) as (_rt, cluster):
            assert (await cluster.send("orders", [("a", b"o")], dedup_ids=["evt-1"])).accepted == 1
            audit = await cluster.send("audit", [("a", b"x")], dedup_ids=["evt-1"])
            assert (audit.accepted, audit.duplicates) == (1, 0)
            # within one queue the id still drops
            assert (await cluster.send("audit", [("a", b"y")], dedup_ids=["evt-1"])).duplicates == 1
            assert await drain(cluster, "orders") == {"a": [b"o"]}
            assert await drain(cluster, "audit") == {"a": [b"x"]}

    sim(main)
