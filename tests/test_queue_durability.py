"""Queues are durable: a crashed server, a new process, a failed store write lose nothing.

A restarted server rebuilds from its journal: every stored message in
order, which one was out (still out, so a key never has two out), the
dedup ids. A store write that fails changes nothing and a retry goes
through exactly once. A store remembers how many servers its keys were
spread over and refuses another count.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from actors.queue import Ledger, QueueDepth, QueuedMessage, Retry
from runtime import Backoff, Fault, InjectedFault, Runtime, ScenarioError, StoreError
from tests.queue_helpers import bodies, drain, open_cluster, sim

SENT = [(f"key-{i % 5}", b"%d" % i) for i in range(60)]


def per_key(items: list[tuple[str, bytes]]) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    for key, body in items:
        out.setdefault(key, []).append(body)
    return out


async def crash_servers(rt: Runtime, target: str = "queue.server-*") -> None:
    """Crash every matching server at its next request and let the supervisor restart it."""
    rt.faults.install([Fault(kind="crash", target=target, at=rt.now(), all=True)])
    await rt.sleep(0.001)


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path}/state.db"


def test_a_crashed_server_restarts_with_every_message_in_order(store: str) -> None:
    async def main() -> None:
        async with open_cluster(store) as (rt, cluster):
            await cluster.send("q", SENT)
            await crash_servers(rt)
            with pytest.raises(InjectedFault):
                await cluster.depth("q")
            await rt.sleep(0.5)
            assert cluster.metrics.server_recoveries >= 1
            assert await cluster.depth("q") == QueueDepth(60, 0, 0)
            assert await drain(cluster, "q") == per_key(SENT)

    sim(main)


def test_messages_out_when_a_server_crashed_stay_out_until_their_timeout(store: str) -> None:
    async def main() -> None:
        async with open_cluster(store, servers=1, visibility_timeout=5.0) as (rt, cluster):
            await cluster.send("q", SENT)
            start = rt.now()
            out = await cluster.receive("q", per_server=3)
            assert len(out) == 3
            await crash_servers(rt)
            with pytest.raises(InjectedFault):
                await cluster.depth("q")
            await rt.sleep(0.5)
            assert cluster.metrics.server_recoveries == 1
            assert await cluster.depth("q") == QueueDepth(57, 3, 0)
            others = await cluster.receive("q", per_server=10)
            # the keys whose head was out get nothing: never two out for one key
            assert set(bodies(others)).isdisjoint(bodies(out))
            assert len(others) == 2
            # a receipt from before the crash still settles its delivery
            assert (await cluster.ack([out[0].receipt])).acked == 1
            await cluster.ack([d.receipt for d in others])
            # the other two come back only after their (fresh) visibility timeout
            await rt.sleep(start + 4.9 - rt.now())
            again = await cluster.receive("q", per_server=10)
            assert {d.message.key for d in again}.isdisjoint({d.message.key for d in out[1:]})
            await cluster.ack([d.receipt for d in again])
            await rt.sleep(start + 5.5 - rt.now())
            was_out = {o.message.id for o in out[1:]}
            back = [d for d in await cluster.receive("q", per_server=10)
                    if d.message.id in was_out]
            assert len(back) == 2 and all(d.receipt.attempt == 2 for d in back)

    sim(main)


def test_a_new_runtime_on_the_same_sqlite_file_loses_nothing_and_keeps_order(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/state.db"
    taken: dict[str, list[bytes]] = {}
    out_before: list[bytes] = []

    async def first_process() -> None:
        async with open_cluster(url, servers=3, visibility_timeout=5.0) as (_rt, cluster):
            await cluster.send("q", SENT, dedup_ids=[f"id-{i}" for i in range(len(SENT))])
            for _ in range(4):
                got = await cluster.receive("q")
                for key, body in bodies(got).items():
                    taken.setdefault(key, []).append(body)
                await cluster.ack([d.receipt for d in got])
            # these stay out, unacked, when the process ends
            out_before.extend(d.message.body for d in await cluster.receive("q"))

    async def second_process() -> None:
        async with open_cluster(url, servers=3, visibility_timeout=5.0) as (rt, cluster):
            assert cluster.metrics.server_recoveries == 3
            depth = await cluster.depth("q")
            assert depth.in_flight == len(out_before) and depth.dead == 0
            assert depth.pending + depth.in_flight + sum(map(len, taken.values())) == len(SENT)
            # the dedup ids survived: the whole batch again is all duplicates
            again = await cluster.send("q", SENT, dedup_ids=[f"id-{i}" for i in range(len(SENT))])
            assert (again.accepted, again.duplicates) == (0, len(SENT))
            await rt.sleep(5.1)
            rest = await drain(cluster, "q")
            for key, items in rest.items():
                taken.setdefault(key, []).extend(items)

    sim(first_process)
    assert out_before
    sim(second_process)
    assert taken == per_key(SENT)


def test_a_failed_journal_write_changes_nothing_and_a_retry_enqueues_once(store: str) -> None:
    messages = [QueuedMessage(f"id-{i}", key, body, Ledger()) for i, (key, body) in
                enumerate(SENT[:10])]

    async def main() -> None:
        async with open_cluster(store, servers=1) as (rt, cluster):
            # the next store write (the server's journal append) fails
            rt.faults.install([Fault(kind="store_error", target="store.write", probability=1.0,
                                     count=1)])
            with pytest.raises(StoreError):
                await cluster.enqueue("q", messages)
            await rt.sleep(0.5)  # the server crashed on purpose and restarted
            assert await cluster.depth("q") == QueueDepth(0, 0, 0)

            retries: list[str] = []
            retry = Retry(attempts=3, backoff=Backoff(min=0.01, max=0.1), rng=random.Random(1),
                          on_retry=lambda what, exc: retries.append(what))
            rt.faults.install([Fault(kind="store_error", target="store.write", probability=1.0,
                                     count=2)])
            result = await cluster.enqueue("q", messages, retry)
            assert (result.accepted, result.duplicates) == (10, 0)
            assert retries == ["Enqueue to server 0"] * 2
            assert await drain(cluster, "q") == per_key(SENT[:10])

    sim(main)


def test_a_store_error_is_retried_and_the_messages_are_stored_exactly_once(store: str) -> None:
    async def main() -> None:
        async with open_cluster(store, servers=2) as (rt, cluster):
            retries: list[str] = []
            retry = Retry(attempts=3, backoff=Backoff(min=0.01, max=0.1), rng=random.Random(1),
                          on_retry=lambda what, exc: retries.append(what))
            await cluster.send("q", SENT[:20])
            got = await cluster.receive("q")
            rt.faults.install([Fault(kind="store_error", target="store.write", probability=1.0,
                                     count=2)])
            result = await cluster.ack([d.receipt for d in got], retry=retry)
            assert result.acked == len(got) and not result.refused
            assert len(retries) == 2 and all(r.startswith("Settle to server") for r in retries)
            rest = await drain(cluster, "q")
            assert sum(map(len, rest.values())) == 20 - len(got)

    sim(main)


def test_a_failed_receive_hands_nothing_out_and_the_message_stays_first(store: str) -> None:
    async def main() -> None:
        async with open_cluster(store, servers=1) as (rt, cluster):
            await cluster.send("q", [("a", b"a1"), ("a", b"a2")])
            rt.faults.install([Fault(kind="store_error", target="store.write", probability=1.0,
                                     count=1)])
            errors: list[int] = []
            assert await cluster.receive("q", on_error=lambda s, e: errors.append(s)) == []
            assert errors == [0]
            await rt.sleep(0.5)
            (got,) = await cluster.receive("q")
            assert got.message.body == b"a1" and got.receipt.attempt == 1

    sim(main)


def test_a_store_refuses_a_cluster_with_another_server_count(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/state.db"

    async def start(servers: int) -> None:
        async with open_cluster(url, servers=servers) as (_rt, cluster):
            await cluster.send("q", SENT)

    sim(lambda: start(3))
    sim(lambda: start(3))  # the same layout again is fine
    with pytest.raises(ScenarioError, match="spread over 3 servers; starting with 4"):
        sim(lambda: start(4))
