"""A simulated cluster: membership events, node death, partitions, replay by seed."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from _helpers import sim
from cluster_helpers import (
    Account,
    Deposit,
    SimCluster,
    replay_program,
    reset_account_journal,
    shared_memory_store,
)
from structlog.testing import capture_logs

from runtime import Actor, AskTimeout, Fault, Message, Terminated
from runtime.cluster import SimulatedNetwork
from runtime.cluster._membership import rendezvous

TESTS = Path(__file__).parent


@pytest.fixture(autouse=True)
def _fresh_journal() -> None:
    reset_account_journal()


class Ping(Message, frozen=True):
    n: int


class Echo(Actor[Ping]):
    async def receive(self, msg: Ping) -> int:
        return msg.n


class Watcher(Actor[Terminated]):
    def __init__(self, seen: list[tuple[float, Terminated]]) -> None:
        self.seen = seen

    async def receive(self, msg: Terminated) -> None:
        self.seen.append((self.now(), msg))


def test_nodes_see_each_other_join_leave_and_die() -> None:
    async def main() -> tuple[list[str], list[str], list[str], list[tuple[str, str]]]:
        cluster = SimCluster(SimulatedNetwork(), await shared_memory_store(), lease_ttl=1.0)
        with capture_logs() as logs:
            n1 = await cluster.start("n1")
            await cluster.start("n2")
            await cluster.start("n3")
            await asyncio.sleep(1.0)
            all_three = n1.nodes()
            await cluster.runtimes.pop("n3").shutdown()  # a graceful exit
            cluster.kill("n2")
            await asyncio.sleep(0.5)
            soon = n1.nodes()
            await asyncio.sleep(1.5)
            later = n1.nodes()
        await cluster.stop()
        seen = [(e["event"], e["subject"]) for e in logs
                if e.get("node") == "n1" and e["event"].startswith("node.")]
        return all_three, soon, later, seen

    all_three, soon, later, seen = sim(main, seed=11)
    assert all_three == ["n1", "n2", "n3"]
    assert soon == ["n1", "n2"]  # left at once; the killed one still holds its lease
    assert later == ["n1"]  # its lease expired: dead
    assert seen == [("node.started", "n1"), ("node.joined", "n2"), ("node.joined", "n3"),
                    ("node.left", "n3"), ("node.dead", "n2")]


def test_remote_refs_work_over_the_simulated_network_and_watch_sees_node_down() -> None:
    async def main() -> tuple[int, list[tuple[float, Terminated]], str]:
        cluster = SimCluster(SimulatedNetwork(), await shared_memory_store(), lease_ttl=1.0)
        n1 = await cluster.start("n1")
        n2 = await cluster.start("n2")
        await n2.spawn(Echo, name="echo")
        echo = n1.remote("n2", "echo", Echo)
        answer = await echo.ask(Ping(7))
        seen: list[tuple[float, Terminated]] = []
        watcher = await n1.spawn(Watcher, seen)
        watcher_actor = n1._registry[watcher.name].instance
        assert watcher_actor is not None
        watcher_actor.watch(echo)
        await asyncio.sleep(0.1)
        cluster.kill("n2")
        killed_at = n1.now()
        await asyncio.sleep(3.0)
        try:
            await echo.ask(Ping(1), timeout=0.5)
            timeout = ""
        except AskTimeout as exc:
            timeout = str(exc)
        dead_letters = n1.dead_letters
        await echo.tell(Ping(2))  # to a node known dead: a dead letter, not a queue forever
        assert n1.dead_letters == dead_letters + 1
        await cluster.stop()
        return answer, [(t - killed_at, m) for t, m in seen], timeout

    answer, seen, timeout = sim(main, seed=12)
    assert answer == 7
    assert [m for _, m in seen] == [Terminated(actor="echo", reason="node_down")]
    assert seen[0][0] <= 1.0 + 1.0  # noticed within lease TTL + one membership refresh
    assert "on node 'n2'" in timeout


def test_a_partition_delays_entity_messages_until_it_heals_and_none_is_lost() -> None:
    async def main() -> tuple[list[int], int]:
        net = SimulatedNetwork()
        cluster = SimCluster(net, await shared_memory_store(), lease_ttl=1.0)
        for name in ("n1", "n2"):
            await cluster.start(name)
        client = await cluster.start("client", hosts=False)
        await asyncio.sleep(1.0)
        ref = client.entity(Account, "erin")
        await ref.ask(Deposit(id="0", amount=1))
        host = Account.recovered[-1][0]
        net.partition([host], ["client"])
        for i in range(1, 4):
            ref.tell_nowait(Deposit(id=str(i), amount=10))
        await asyncio.sleep(2.0)
        during = Account.journal[-1][3]
        net.heal()
        await asyncio.sleep(2.0)
        total = await ref.ask(Deposit(id="4", amount=100))
        await cluster.stop()
        return [during, total], len(Account.recovered)

    (during, total), activations = sim(main, seed=13)
    assert during == 1  # nothing crossed the partition
    assert total == 131  # the retried tells all arrived once healed
    assert activations == 1  # the store was reachable: the host kept its lease


def test_drops_and_duplicates_do_not_change_totals() -> None:
    async def main() -> tuple[int, int, int]:
        net = SimulatedNetwork(drop=0.2, duplicate=0.2)
        cluster = SimCluster(net, await shared_memory_store(), lease_ttl=1.0)
        for name in ("n1", "n2"):
            await cluster.start(name)
        client = await cluster.start("client", hosts=False)
        await asyncio.sleep(1.0)
        ref = client.entity(Account, "fay")
        for i in range(40):
            for _ in range(50):
                try:
                    await ref.ask(Deposit(id=str(i), amount=1), timeout=0.5)
                    break
                except AskTimeout:
                    continue
        total = await ref.ask(Deposit(id="last", amount=0), timeout=5.0)
        await cluster.stop()
        return total, net.dropped, net.duplicated

    total, dropped, duplicated = sim(main, seed=14)
    assert total == 40
    assert dropped > 0 and duplicated > 0


def test_the_same_seed_replays_the_same_cluster_trace_in_another_process() -> None:
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import runtime; "
            "from structlog.testing import capture_logs; "
            "from cluster_helpers import replay_program\n"
            "with capture_logs():\n"
            "    print(runtime.run(replay_program, int(sys.argv[2]), simulated=True, "
            "seed=int(sys.argv[2])))")

    def digest(seed: int) -> str:
        done = subprocess.run([sys.executable, "-c", code, str(TESTS), str(seed)],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    first = digest(21)
    assert digest(21) == first
    assert sim(lambda: replay_program(21), seed=21) == first
    assert digest(22) != first


def test_node_faults_are_fault_kinds_of_a_plan() -> None:
    async def main() -> tuple[list[str], list[tuple[str, str]]]:
        net = SimulatedNetwork()
        cluster = SimCluster(net, await shared_memory_store(), lease_ttl=1.0)
        plan = [Fault(kind="partition", target="n1|n2,n3", at=1.0),
                Fault(kind="heal", at=1.5),
                Fault(kind="pause_node", target="n3", at=2.0, duration=0.5),
                Fault(kind="kill_node", target="n2", at=3.0)]
        with capture_logs() as logs:
            n1 = await cluster.start("n1", faults=plan)
            await cluster.start("n2")
            await cluster.start("n3")
            await asyncio.sleep(6.0)
            nodes = n1.nodes()
        cluster.runtimes.pop("n2")
        await cluster.stop()
        events = [(e["event"], e.get("subject", e.get("groups", ""))) for e in logs
                  if e["event"] in ("network.partitioned", "network.healed", "node.killed",
                                    "node.dead") and e.get("node", "n1") == "n1"]
        return nodes, events

    nodes, events = sim(main, seed=15)
    assert nodes == ["n1", "n3"]
    assert events == [("network.partitioned", "n1 | n2,n3"), ("network.healed", ""),
                      ("node.dead", "n2")]


def test_a_node_that_cannot_renew_stops_its_entities_and_a_survivor_takes_over() -> None:
    key = next(k for k in (f"g{i}" for i in range(100))
               if rendezvous("Account", k, ["n1", "n2"]) == "n1")

    async def main() -> tuple[list[tuple[str, str, str]], object, list[tuple[str, str, int]]]:
        cluster = SimCluster(SimulatedNetwork(), await shared_memory_store(), lease_ttl=1.0)
        store_down = [Fault(kind="store_error", target="store.acquire", probability=1.0,
                            start=2.0)]
        with capture_logs() as logs:
            await cluster.start("n1", faults=store_down)
            n2 = await cluster.start("n2")
            await asyncio.sleep(1.0)
            await n2.entity(Account, key).ask(Deposit(id="1", amount=1))
            await asyncio.sleep(3.0)
            total = await n2.entity(Account, key).ask(Deposit(id="2", amount=2), timeout=5.0)
        await cluster.stop()
        n1_events = [(e["event"], e["subject"], e["detail"]) for e in logs
                     if e.get("node") == "n1" and e["event"] in (
                         "node.lease_lost", "entity.stopped", "entity.activated")]
        return n1_events, total, Account.recovered

    n1_events, total, recovered = sim(main, seed=16)
    assert n1_events == [("entity.activated", f"Account/{key}", "token 1"),
                         ("node.lease_lost", "n1", "renewal failed for a whole lease TTL"),
                         ("entity.stopped", f"Account/{key}", "node_lease_lost")]
    assert total == 3
    assert [node for node, _, _ in recovered] == ["n1", "n2"]


def test_a_node_declared_dead_while_alive_still_gets_its_answers() -> None:
    """n1's renewals fail for longer than a TTL: n2 declares it dead, yet n1 is up and
    asking; n2's answers must reach it (they were once dropped as 'to a dead node')."""

    async def main() -> tuple[list[object], list[str]]:
        cluster = SimCluster(SimulatedNetwork(), await shared_memory_store(), lease_ttl=1.0)
        late = [Fault(kind="store_error", target="store.acquire", probability=1.0, start=1.0,
                      count=6)]
        with capture_logs() as logs:
            n1 = await cluster.start("n1", faults=late)
            n2 = await cluster.start("n2")
            await n2.spawn(Echo, name="echo")
            echo = n1.remote("n2", "echo", Echo)
            answers = []
            for i in range(40):
                answers.append(await echo.ask(Ping(i), timeout=1.0))
                await asyncio.sleep(0.1)
        await cluster.stop()
        return answers, [e["event"] for e in logs if e.get("node") == "n2"
                         and e.get("subject") == "n1" and e["event"].startswith("node.")]

    answers, n2_saw = sim(main, seed=17)
    assert answers == list(range(40))
    assert n2_saw[:2] == ["node.joined", "node.dead"]  # the window this test is about


def test_a_failure_in_the_periodic_work_does_not_stop_the_renewals(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from runtime.cluster._membership import Membership

    refresh = Membership.refresh
    calls = {"n": 0}

    async def flaky(self: Membership) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("a bug in one round")
        await refresh(self)

    monkeypatch.setattr(Membership, "refresh", flaky)

    async def main() -> tuple[list[str], list[str]]:
        cluster = SimCluster(SimulatedNetwork(), await shared_memory_store(), lease_ttl=1.0)
        with capture_logs() as logs:
            n1 = await cluster.start("n1")
            await cluster.start("n2")
            await asyncio.sleep(5.0)
            nodes = n1.nodes()
        await cluster.stop()
        return nodes, [e["event"] for e in logs]

    nodes, events = sim(main, seed=18)
    assert "node.periodic_failed" in events
    assert nodes == ["n1", "n2"]
    assert "node.lease_lost" not in events and "node.dead" not in events


def test_link_fault_windows_are_fault_kinds_and_do_not_change_totals() -> None:
    """net_drop, net_duplicate and net_delay open for ``duration`` on frames to or from
    the target nodes, scheduled by a fault plan; an entity's fenced, deduplicated
    deposits still add up exactly, and a repeated window extends rather than stacks."""

    async def main() -> tuple[int, int, int, float, list[tuple[str, str]]]:
        net = SimulatedNetwork()
        cluster = SimCluster(net, await shared_memory_store(), lease_ttl=1.0)
        plan = [Fault(kind="net_drop", target="n*", at=1.2, duration=0.3),
                Fault(kind="net_duplicate", target="n*", every=0.4, start=2.0, count=3,
                      duration=0.5),
                Fault(kind="net_delay", target="client", at=3.5, duration=1.0, delay=0.2)]
        client = await cluster.start("client", hosts=False, faults=plan)
        for name in ("n1", "n2"):
            await cluster.start(name)
        await asyncio.sleep(1.0)
        ref = client.entity(Account, "gus")
        slowest = 0.0
        for i in range(40):
            for _ in range(50):
                started = client.now()
                try:
                    await ref.ask(Deposit(id=str(i), amount=1), timeout=0.5)
                    slowest = max(slowest, client.now() - started)
                    break
                except AskTimeout:
                    continue
            await asyncio.sleep(0.05)
        total = await ref.ask(Deposit(id="last", amount=0), timeout=5.0)
        windows = [(w.kind, w.target) for w in net._link_faults]
        await cluster.stop()
        return total, net.dropped, net.duplicated, slowest, windows

    total, dropped, duplicated, slowest, _ = sim(main, seed=17)
    assert total == 40
    assert dropped > 0 and duplicated > 0
    assert slowest >= 0.4  # a round trip through the 0.2 s delay window, both ways


def test_a_repeated_link_fault_window_extends_instead_of_stacking() -> None:
    async def main() -> tuple[list[tuple[str, str, float]], dict[str, float]]:
        net = SimulatedNetwork()
        net.open_link_fault("net_delay", "n1", 1.0, delay=0.1)
        await asyncio.sleep(0.5)
        net.open_link_fault("net_delay", "n1", 1.0, delay=0.1)
        windows = [(w.kind, w.target, w.until) for w in net._link_faults]
        await asyncio.sleep(1.2)
        return windows, net.link_faults_on("n1", "n2")

    windows, after = sim(main, seed=1)
    assert windows == [("net_delay", "n1", 1.5)]
    assert after == {}
