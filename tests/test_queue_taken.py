"""Taking and settling in columns (``QueueCluster.take`` / ``settle_taken``), in
simulated time, at exact boundaries.

A ``Taken`` holds one server's batches of one receive as columns; settling it
acks every batch whole in one request, except the batches a settlement names,
which are settled as ``settle`` does (the members before a failure acked, the
failing one charged and dead-lettered past ``max_receives``). Each batch is
still checked on its own: one past its visibility deadline (at the deadline
exactly), or already settled, is refused alone and named by its receipt. A
request whose columns differ in length is refused whole before anything
changes.
"""

from __future__ import annotations

import pytest

from actors.queue import Settlement, Taken
from actors.queue._messages import SettleTaken
from actors.queue._settling import MalformedSettlement
from tests.queue_helpers import open_cluster, sim


def by_key(taken: Taken) -> dict[str, list[bytes]]:
    starts = taken.starts()
    return {key: [m.body for m in taken.messages[start:start + count]]
            for key, start, count in zip(taken.keys, starts, taken.counts, strict=True)}


def test_a_taken_is_the_same_batches_as_a_receive_in_columns() -> None:
    async def main() -> None:
        async with open_cluster(servers=1) as (_rt, cluster):
            await cluster.send("q", [("a", b"a1"), ("b", b"b1"), ("a", b"a2"), ("a", b"a3")])
            (taken,) = await cluster.take("q", per_key=2)
            assert by_key(taken) == {"a": [b"a1", b"a2"], "b": [b"b1"]}
            assert taken.starts() == [0, 2] and taken.attempts == [1, 1]
            assert [b.receipt for b in taken.batches()] == [taken.receipt(0), taken.receipt(1)]
            assert await cluster.take("q", per_key=2) == []  # both keys out
            result = await cluster.settle_taken([(taken, [])])
            assert result.acked == 3 and not result.refused
            (rest,) = await cluster.take("q", per_key=2)
            assert by_key(rest) == {"a": [b"a3"]}

    sim(main)


def test_a_taken_settled_a_hair_before_its_deadline_is_acked_and_at_it_refused() -> None:
    async def main() -> None:
        async with open_cluster(servers=1, visibility_timeout=5.0) as (rt, cluster):
            await cluster.send("q", [("a", b"a1"), ("b", b"b1")])
            start = rt.now()
            (taken,) = await cluster.take("q")
            await rt.sleep(start + 4.999 - rt.now())
            assert (await cluster.settle_taken([(taken, [])])).acked == 2
            await cluster.send("q", [("a", b"a2"), ("b", b"b2")])
            start = rt.now()
            (late,) = await cluster.take("q")
            await rt.sleep(start + 5.0 - rt.now())
            result = await cluster.settle_taken([(late, [])])
            assert result.acked == 0
            assert result.refused == [late.receipt(0), late.receipt(1)]
            await rt.sleep(0.001)
            (again,) = await cluster.take("q")  # handed out again, as attempt 2
            assert by_key(again) == by_key(late) and again.attempts == [2, 2]

    sim(main)


def test_a_batch_already_settled_is_refused_alone_and_the_rest_acked() -> None:
    async def main() -> None:
        async with open_cluster(servers=1) as (_rt, cluster):
            await cluster.send("q", [("a", b"a1"), ("b", b"b1"), ("c", b"c1")])
            (taken,) = await cluster.take("q")
            assert (await cluster.ack([taken.receipt(1)])).acked == 1
            result = await cluster.settle_taken([(taken, [])])
            assert result.acked == 2 and result.refused == [taken.receipt(1)]
            assert (await cluster.depth("q")).drained

    sim(main)


def test_a_failure_named_in_a_taken_is_settled_alone_and_dead_lettered_past_max_receives(
) -> None:
    async def main() -> None:
        async with open_cluster(servers=1, max_receives=2) as (_rt, cluster):
            await cluster.send("q", [("a", b"ok1"), ("a", b"poison"), ("a", b"ok2"),
                                     ("b", b"b1")])
            (taken,) = await cluster.take("q", per_key=3)
            assert by_key(taken) == {"a": [b"ok1", b"poison", b"ok2"], "b": [b"b1"]}
            failed = Settlement(taken.receipt(0), 1, 1, "bad body")
            result = await cluster.settle_taken([(taken, [failed])])
            assert result.acked == 4 and not result.refused  # a's batch of 3, b's of 1
            (again,) = await cluster.take("q", per_key=3)
            assert by_key(again) == {"a": [b"poison", b"ok2"]} and again.attempts == [2]
            failed = Settlement(again.receipt(0), 0, 0, "bad body")
            assert (await cluster.settle_taken([(again, [failed])])).acked == 2
            (dead,) = await cluster.dead_letters("q")
            assert dead.message.body == b"poison" and dead.receives == 2
            assert dead.reason == "released after 2 receives: bad body"
            (rest,) = await cluster.take("q", per_key=3)
            assert by_key(rest) == {"a": [b"ok2"]} and rest.attempts == [1]

    sim(main)


def test_a_settlement_whose_columns_differ_in_length_changes_nothing() -> None:
    async def main() -> None:
        async with open_cluster(servers=1) as (_rt, cluster):
            await cluster.send("q", [("a", b"a1"), ("b", b"b1")])
            (taken,) = await cluster.take("q")
            bad = SettleTaken("q", taken.keys, taken.offsets, taken.attempts, taken.counts[:1])
            with pytest.raises(MalformedSettlement, match=r"lengths \[2, 2, 2, 1\]"):
                await cluster.servers[0].ask(bad)
            # the server restarted from its journal: both batches are still out, in time
            assert (await cluster.settle_taken([(taken, [])])).acked == 2

    sim(main)
