"""Batched per-key delivery and windows kept by the server, through ``QueueCluster``,
in simulated time, at exact boundaries.

A batch is consecutive messages of one key from its head, one batch of a key
out at a time, settled as a unit: at its visibility deadline it comes back
whole (not a moment before); a failing member is named, the members before
it are acked, only it counts a failed receive and, past ``max_receives``,
only it is dead-lettered. A windowed queue hands a key out only as a whole
window (or a partial one once its oldest member waited ``max_age`` or the
queue is sealed), and a window handed out again has the same members; a
window that lost a member to the dead-letter queue is refilled.
"""

from __future__ import annotations

from actors.queue import Batch, Settlement, WindowPolicy
from tests.queue_helpers import open_cluster, sim


def bodies(batches: list[Batch]) -> dict[str, list[bytes]]:
    keys = [b.receipt.key for b in batches]
    assert len(keys) == len(set(keys)), f"two batches of one key in one receive: {keys}"
    return {b.receipt.key: [m.body for m in b.messages] for b in batches}


def test_a_batch_is_a_keys_first_messages_and_one_batch_of_a_key_is_out() -> None:
    async def main() -> None:
        async with open_cluster(servers=1) as (_rt, cluster):
            await cluster.send("q", [("a", b"a%d" % i) for i in range(1, 6)] + [("b", b"b1")])
            first = await cluster.receive_batches("q", per_key=3)
            assert bodies(first) == {"a": [b"a1", b"a2", b"a3"], "b": [b"b1"]}
            assert all(b.receipt.count == len(b.messages) for b in first)
            assert await cluster.receive_batches("q", per_key=3) == []  # both keys out
            acked = await cluster.ack([b.receipt for b in first])
            assert acked.acked == 4 and not acked.refused
            assert bodies(await cluster.receive_batches("q", per_key=3)) == {
                "a": [b"a4", b"a5"]}

    sim(main)


def test_a_batch_comes_back_whole_at_its_visibility_deadline_and_its_late_ack_is_refused(
) -> None:
    async def main() -> None:
        async with open_cluster(servers=1, visibility_timeout=5.0) as (rt, cluster):
            await cluster.send("q", [("a", b"a%d" % i) for i in range(1, 5)])
            start = rt.now()
            (first,) = await cluster.receive_batches("q", per_key=3)
            await rt.sleep(start + 4.999 - rt.now())
            assert await cluster.receive_batches("q", per_key=3) == []  # not a moment before
            await rt.sleep(start + 5.0 - rt.now())
            late = await cluster.ack([first.receipt])  # at the deadline: too late
            assert late.acked == 0 and late.refused == [first.receipt]
            await rt.sleep(0.001)
            (again,) = await cluster.receive_batches("q", per_key=10)
            # the same first three again (now possibly with the fourth), as attempt 2
            assert again.messages[:3] == first.messages
            assert again.receipt.attempt == 2 and again.receipt.offset == first.receipt.offset
            assert (await cluster.ack([again.receipt])).acked == len(again.messages)

    sim(main)


def test_a_poison_member_of_a_batch_is_retried_alone_then_dead_lettered() -> None:
    """Members before it are acked; members after it are not charged its failures."""
    async def main() -> None:
        async with open_cluster(servers=1, max_receives=3) as (_rt, cluster):
            await cluster.send("q", [("a", b"ok1"), ("a", b"poison"), ("a", b"ok2")])
            (batch,) = await cluster.receive_batches("q", per_key=3)
            settled = await cluster.settle([Settlement(batch.receipt, 1, 1, "bad body")])
            assert settled.acked == 3 and not settled.refused
            for attempt in (2, 3):
                (batch,) = await cluster.receive_batches("q", per_key=3)
                assert [m.body for m in batch.messages] == [b"poison", b"ok2"]
                assert batch.receipt.attempt == attempt
                await cluster.settle([Settlement(batch.receipt, 0, 0, "bad body")])
            (dead,) = await cluster.dead_letters("q")
            assert dead.message.body == b"poison" and dead.receives == 3
            assert dead.reason == "released after 3 receives: bad body"
            (rest,) = await cluster.receive_batches("q", per_key=3)
            # ok2 was handed out three times with the poison, never charged for it
            assert [m.body for m in rest.messages] == [b"ok2"] and rest.receipt.attempt == 1
            assert (await cluster.depth("q")).dead == 1

    sim(main)


def test_a_window_goes_out_whole_and_again_with_the_same_members_then_sealed_partial() -> None:
    async def main() -> None:
        async with open_cluster(servers=1, visibility_timeout=5.0,
                                windows={"w": WindowPolicy(3)}) as (rt, cluster):
            await cluster.send("w", [("a", b"a1"), ("a", b"a2")])
            assert await cluster.receive_batches("w") == []  # not a whole window yet
            await cluster.send("w", [("a", b"a3"), ("a", b"a4")])
            start = rt.now()
            (window,) = await cluster.receive_batches("w", per_key=1)  # per_key: no say
            assert [m.body for m in window.messages] == [b"a1", b"a2", b"a3"]
            await cluster.send("w", [("a", b"a5"), ("a", b"a6")])
            await rt.sleep(start + 5.001 - rt.now())
            (again,) = await cluster.receive_batches("w")
            assert again.messages == window.messages and again.receipt.attempt == 2
            await cluster.ack([again.receipt])
            (second,) = await cluster.receive_batches("w")
            assert [m.body for m in second.messages] == [b"a4", b"a5", b"a6"]
            await cluster.ack([second.receipt])
            await cluster.send("w", [("a", b"a7")])
            assert await cluster.receive_batches("w") == []
            await cluster.seal("w")  # the input ended: the partial window goes out
            (last,) = await cluster.receive_batches("w")
            assert [m.body for m in last.messages] == [b"a7"]

    sim(main)


def test_a_window_goes_out_partial_once_its_oldest_member_waited_max_age() -> None:
    async def main() -> None:
        async with open_cluster(servers=1, windows={"w": WindowPolicy(10, 2.0)}) as (
                rt, cluster):
            start = rt.now()
            await cluster.send("w", [("a", b"a1")])
            await rt.sleep(1.0)
            await cluster.send("w", [("a", b"a2")])
            await rt.sleep(start + 1.999 - rt.now())
            assert await cluster.receive_batches("w") == []
            await rt.sleep(start + 2.0 - rt.now())
            (window,) = await cluster.receive_batches("w")
            assert [m.body for m in window.messages] == [b"a1", b"a2"]

    sim(main)


def test_a_window_whose_member_is_dead_lettered_is_refilled_without_it() -> None:
    async def main() -> None:
        async with open_cluster(servers=1, max_receives=1,
                                windows={"w": WindowPolicy(3)}) as (_rt, cluster):
            await cluster.send("w", [("a", b"a%d" % i) for i in range(1, 5)])
            (window,) = await cluster.receive_batches("w")
            await cluster.settle([Settlement(window.receipt, 0, 1, "refused with a1")])
            (dead,) = await cluster.dead_letters("w")
            assert dead.message.body == b"a2"
            (refilled,) = await cluster.receive_batches("w")
            assert [m.body for m in refilled.messages] == [b"a1", b"a3", b"a4"]
            assert refilled.receipt.attempt == 1  # a1 was not charged for a2
            await cluster.ack([refilled.receipt])
            depth = await cluster.depth("w")
            assert (depth.pending, depth.in_flight, depth.dead) == (0, 0, 1)

    sim(main)


def test_a_restarted_client_gets_its_batches_back_at_once_not_at_their_timeout() -> None:
    """What a crashed run of a client held comes back when it restarts (counted as a
    receive, as a timeout is); its old receipts are refused; other holders' stay out."""
    async def main() -> None:
        async with open_cluster(servers=1, visibility_timeout=30.0, max_receives=2) as (
                rt, cluster):
            await cluster.send("q", [("a", b"a1"), ("a", b"a2")])
            (mine,) = await cluster.receive_batches("q", per_key=2, holder="client-1")
            assert [m.body for m in mine.messages] == [b"a1", b"a2"]
            await cluster.send("q", [("b", b"b1")])
            (theirs,) = await cluster.receive_batches("q", per_key=2, holder="client-2")
            start = rt.now()
            await cluster.holder_restarted("client-1")
            (again,) = await cluster.receive_batches("q", per_key=2, holder="client-1")
            assert rt.now() - start < 1.0  # not 30 s later
            assert again.messages == mine.messages and again.receipt.attempt == 2
            stale = await cluster.ack([mine.receipt])
            assert stale.acked == 0 and stale.refused == [mine.receipt]
            # a message that keeps crashing its client still ends in the dead-letter queue
            await cluster.holder_restarted("client-1")
            (dead,) = await cluster.dead_letters("q")
            assert dead.message.body == b"a1"
            assert dead.reason == "client client-1 restarted after 2 receives"
            assert (await cluster.ack([theirs.receipt])).acked == 1  # never disturbed

    sim(main)


def test_a_window_that_times_out_at_max_receives_loses_its_head_at_the_deadline() -> None:
    """At its visibility deadline (not a moment before) a window received
    ``max_receives`` times sends its head to the dead-letter queue with the reason, and
    the key's next window is the rest refilled, its late receipt refused."""
    async def main() -> None:
        async with open_cluster(servers=1, visibility_timeout=5.0, max_receives=1,
                                windows={"w": WindowPolicy(3)}) as (rt, cluster):
            await cluster.send("w", [("a", b"a%d" % i) for i in range(1, 5)])
            start = rt.now()
            (window,) = await cluster.receive_batches("w")
            assert [m.body for m in window.messages] == [b"a1", b"a2", b"a3"]
            await rt.sleep(start + 4.999 - rt.now())
            assert await cluster.receive_batches("w") == []
            assert await cluster.dead_letters("w") == []
            await rt.sleep(start + 5.001 - rt.now())
            (dead,) = await cluster.dead_letters("w")
            assert dead.message.body == b"a1"
            assert dead.reason == "visibility timeout after 1 receives"
            late = await cluster.ack([window.receipt])
            assert late.acked == 0 and late.refused == [window.receipt]
            (refilled,) = await cluster.receive_batches("w")
            assert [m.body for m in refilled.messages] == [b"a2", b"a3", b"a4"]
            assert refilled.receipt.attempt == 2  # a2's first receive timed out too
            assert (await cluster.ack([refilled.receipt])).acked == 3
            depth = await cluster.depth("w")
            assert (depth.pending, depth.in_flight, depth.dead) == (0, 0, 1)

    sim(main)
