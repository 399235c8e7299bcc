"""Entities in a simulated cluster: placement, fail-over under fencing, passivation."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import pytest
from _helpers import sim
from cluster_helpers import (
    Account,
    Balance,
    Deposit,
    SimCluster,
    reset_account_journal,
    shared_memory_store,
)
from structlog.testing import capture_logs

from runtime import Actor, AskTimeout, MailboxFull, Message, StaleFencingToken
from runtime.cluster import SimulatedNetwork, UnknownMessageTag
from runtime.cluster._membership import rendezvous


@pytest.fixture(autouse=True)
def _fresh_journal() -> None:
    reset_account_journal()


def test_an_entity_is_activated_once_on_the_node_rendezvous_picks() -> None:
    async def main() -> tuple[list[object], list[str], str, list[tuple[str, str, int]]]:
        cluster = SimCluster(SimulatedNetwork(), await shared_memory_store(), lease_ttl=1.0)
        for name in ("n1", "n2", "n3"):
            await cluster.start(name)
        await asyncio.sleep(1.0)
        rt = cluster.runtimes["n1"]
        totals = [await cluster.runtimes[n].entity(Account, "alice").ask(
            Deposit(id=f"d{i}", amount=5)) for i, n in enumerate(["n1", "n2", "n3", "n1"])]
        totals.append(await rt.entity(Account, "alice").ask(Deposit(id="d0", amount=5)))
        nodes = rt.nodes()
        await cluster.stop()
        return totals, nodes, rendezvous("Account", "alice", nodes) or "", Account.recovered

    totals, nodes, winner, recovered = sim(main, seed=1)
    assert nodes == ["n1", "n2", "n3"]
    assert totals == [5, 10, 15, 20, 20]  # the repeated id d0 changed nothing
    assert recovered == [(winner, "alice", 1)]


def test_after_its_node_is_killed_the_entity_comes_back_on_a_survivor_with_its_state() -> None:
    async def main() -> tuple[int, list[tuple[str, str, int]], str, float, float]:
        cluster = SimCluster(SimulatedNetwork(), await shared_memory_store(), lease_ttl=1.0)
        for name in ("n1", "n2", "n3"):
            await cluster.start(name)
        await asyncio.sleep(1.0)
        client = cluster.runtimes["n1"]
        alice = client.entity(Account, "alice")
        await alice.ask(Deposit(id="a", amount=1))
        host = Account.recovered[-1][0]
        survivor = next(n for n in ("n1", "n2", "n3") if n != host)
        cluster.kill(host)
        killed_at = asyncio.get_running_loop().time()
        total = await cluster.runtimes[survivor].entity(Account, "alice").ask(
            Deposit(id="b", amount=2), timeout=10.0)
        answered_at = asyncio.get_running_loop().time()
        await cluster.stop()
        return total, Account.recovered, host, killed_at, answered_at

    total, recovered, host, killed_at, answered_at = sim(main, seed=2)
    assert total == 3  # recover rebuilt "a" before "b" was handled
    assert len(recovered) == 2
    assert recovered[0][0] == host and recovered[1][0] != host
    assert recovered[1][2] > recovered[0][2]  # a newer fencing token
    assert answered_at - killed_at <= 1.0 + 1.0  # within lease TTL + 1 s


def test_a_paused_node_cannot_write_after_its_entity_moved() -> None:
    """The old activation wakes up with a message in hand: its fenced write is refused."""

    async def main() -> tuple[list[int], int, list[tuple[float, str, int, int]], int]:
        net = SimulatedNetwork()
        store = await shared_memory_store()
        cluster = SimCluster(net, store, lease_ttl=1.0)
        for name in ("n1", "n2", "n3"):
            await cluster.start(name)
        await asyncio.sleep(1.0)
        await cluster.runtimes["n1"].entity(Account, "bob").ask(Deposit(id="x", amount=1))
        host = Account.recovered[-1][0]
        others = [n for n in ("n1", "n2", "n3") if n != host]
        # a deposit reaches the host's mailbox, then the host freezes for 3 TTLs
        stale = asyncio.ensure_future(cluster.runtimes[host].entity(Account, "bob").ask(
            Deposit(id="y", amount=10), timeout=20.0))
        net.pause_node(host, 3.0)
        totals = [await cluster.runtimes[others[0]].entity(Account, "bob").ask(
            Deposit(id="z", amount=100), timeout=10.0)]
        with pytest.raises(StaleFencingToken):  # the old activation's write, refused
            await stale
        await asyncio.sleep(3.0)
        totals.append(await cluster.runtimes[host].entity(Account, "bob").ask(
            Balance(), timeout=10.0))
        stale_fences = store.statistics().stale_fences
        conflicts = store.statistics().conflicts
        await cluster.stop()
        return totals, stale_fences, Account.journal, conflicts

    totals, stale_fences, journal, conflicts = sim(main, seed=3)
    assert totals == [101, 101]
    assert stale_fences == 1
    tokens = [token for _, _, token, _ in journal]
    assert tokens == sorted(tokens)  # never an older activation writing after a newer one
    assert conflicts == 0


def test_an_idle_entity_is_passivated_and_reactivated_on_demand() -> None:
    async def main() -> tuple[int, list[str], int]:
        cluster = SimCluster(SimulatedNetwork(), await shared_memory_store(), lease_ttl=1.0,
                             passivate_after=5.0)
        rt = await cluster.start("n1")
        carol = rt.entity(Account, "carol")
        with capture_logs() as logs:
            await carol.ask(Deposit(id="1", amount=7))
            await asyncio.sleep(10.0)
            passivated = rt.cluster_statistics().passivations
            total = await carol.ask(Deposit(id="2", amount=1))
        await cluster.stop()
        return total, [e["event"] for e in logs if e["event"].startswith("entity.")], passivated

    total, events, passivated = sim(main, seed=4)
    assert total == 8
    assert passivated == 1
    assert events == ["entity.activated", "entity.passivated", "entity.activated"]


def test_an_ask_to_an_entity_no_node_can_host_times_out_naming_it() -> None:
    async def main() -> str:
        cluster = SimCluster(SimulatedNetwork(), await shared_memory_store(), lease_ttl=1.0)
        rt = await cluster.start("n1", hosts=False)
        try:
            await rt.entity(Account, "dave").ask(Deposit(id="1", amount=1), timeout=2.0)
        except AskTimeout as exc:
            return str(exc)
        finally:
            await cluster.stop()
        return "no timeout"

    message = sim(main, seed=5)
    assert "Account/dave" in message and "Deposit" in message and "2 s" in message
    assert "node 'none'" in message


def test_a_node_joining_moves_only_the_keys_it_now_wins() -> None:
    async def main() -> tuple[dict[str, str], dict[str, str], list[str]]:
        cluster = SimCluster(SimulatedNetwork(), await shared_memory_store(), lease_ttl=1.0)
        for name in ("n1", "n2"):
            await cluster.start(name)
        await asyncio.sleep(1.0)
        keys = [f"k{i}" for i in range(12)]
        client = cluster.runtimes["n1"]
        for key in keys:
            await client.entity(Account, key).ask(Deposit(id="1", amount=1))
        before = {key: node for node, key, _ in Account.recovered}
        with capture_logs() as logs:
            await cluster.start("n3")
            await asyncio.sleep(2.0)
            for key in keys:
                await client.entity(Account, key).ask(Deposit(id="2", amount=1), timeout=10.0)
        after = {key: node for node, key, _ in Account.recovered}
        moved = sorted(e["subject"] for e in logs if e["event"] == "entity.moved")
        await cluster.stop()
        return before, after, moved

    before, after, moved = sim(main, seed=6)
    assert {k: n for k, n in after.items() if n != before[k]} == {
        k: "n3" for k in after if rendezvous("Account", k, ["n1", "n2", "n3"]) == "n3"}
    assert moved == sorted(f"Account/{k}" for k in after if after[k] != before[k])
    assert moved  # the seed gives n3 a share


class Explode(Message, frozen=True):
    why: str


class Fragile(Actor[Explode]):
    async def receive(self, msg: Explode) -> None:
        raise ValueError(msg.why)


class Unknown(Message, frozen=True):
    pass


class Misinformed(Actor[Explode | Unknown]):
    """A sender's out-of-date idea of what ``Fragile`` accepts."""


Misinformed.__name__ = "Fragile"  # same entity kind, different message union


def test_an_entitys_error_and_an_unknown_tag_reach_the_asker_on_another_node() -> None:
    async def main() -> tuple[str, str, int]:
        cluster = SimCluster(SimulatedNetwork(), await shared_memory_store(), lease_ttl=1.0)
        host = await cluster.start("host", hosts=False)
        host.register_entity(Fragile)
        client = await cluster.start("client", hosts=False)
        await asyncio.sleep(1.0)
        with pytest.raises(ValueError, match="no such thing") as raised:
            await client.entity(Fragile, "f").ask(Explode("no such thing"))
        with pytest.raises(UnknownMessageTag, match="unknown message tag 'Unknown'") as tag:
            await client.entity(Misinformed, "f").ask(Unknown())
        activations = host.cluster_statistics().activations
        await cluster.stop()
        return str(raised.value.__notes__), str(tag.value), activations

    notes, tag, activations = sim(main, seed=8)
    assert "raised on node 'host'" in notes
    assert "entity Fragile/f on node 'host'" in tag
    assert activations == 1


def test_entity_tells_wait_or_raise_while_too_many_are_unanswered() -> None:
    async def main() -> tuple[str, float, int]:
        net = SimulatedNetwork()
        cluster = SimCluster(net, await shared_memory_store(), lease_ttl=1.0,
                             outbox_capacity=5)
        await cluster.start("host")
        client = await cluster.start("client", hosts=False)
        await asyncio.sleep(1.0)
        ref = client.entity(Account, "hal")
        await ref.ask(Deposit(id="0", amount=1))
        net.partition(["host"], ["client"])
        for i in range(1, 6):
            ref.tell_nowait(Deposit(id=str(i), amount=1))
        with pytest.raises(MailboxFull) as full:
            ref.tell_nowait(Deposit(id="6", amount=1))
        asyncio.get_running_loop().call_later(2.0, net.heal)
        started = client.now()
        await ref.tell(Deposit(id="6", amount=1))  # waits for room: until the heal
        waited = client.now() - started
        total = await ref.ask(Deposit(id="7", amount=1), timeout=5.0)
        await cluster.stop()
        return str(full.value), waited, total  # type: ignore[return-value]

    message, waited, total = sim(main, seed=9)
    assert "Account/hal" in message and "Deposit" in message
    assert waited >= 2.0
    assert total == 8


def test_re_sends_queue_no_second_copy_behind_a_connection_that_is_down() -> None:
    async def main() -> tuple[int, int]:
        cluster = SimCluster(SimulatedNetwork(), await shared_memory_store(), lease_ttl=2.0)
        for name in ("h1", "h2"):
            await cluster.start(name)
        client = await cluster.start("client", hosts=False)
        await asyncio.sleep(1.0)
        key = next(k for k in (f"i{n}" for n in range(100))
                   if rendezvous("Account", k, ["h1", "h2"]) == "h1")
        ref = client.entity(Account, key)
        await ref.ask(Deposit(id="0", amount=1))
        cluster.kill("h1")
        await asyncio.sleep(0.01)
        for i in range(1, 21):
            ref.tell_nowait(Deposit(id=str(i), amount=1))
        await asyncio.sleep(1.5)  # h1 is not yet declared dead: re-sends go its way
        node = client._cluster
        assert node is not None
        queued = len(node.outboxes["h1"].items)
        total = await ref.ask(Deposit(id="21", amount=1), timeout=10.0)
        await cluster.stop()
        return queued, total  # type: ignore[return-value]

    queued, total = sim(main, seed=10)
    assert queued == 20  # one copy each, however many re-sends fell due
    assert total == 22


class Moody(Actor[Deposit]):
    """An entity whose ``recover`` fails ``failures`` more times before it works."""

    failures: ClassVar[int] = 0
    applied: ClassVar[list[str]] = []

    async def recover(self) -> None:
        if Moody.failures > 0:
            Moody.failures -= 1
            raise RuntimeError("the store is not ready")

    async def receive(self, msg: Deposit) -> None:
        Moody.applied.append(msg.id)


def test_a_failed_recover_fails_an_ask_and_a_tell_is_tried_again() -> None:
    async def main() -> tuple[str, list[str]]:
        Moody.applied = []
        cluster = SimCluster(SimulatedNetwork(), await shared_memory_store(), lease_ttl=1.0)
        host = await cluster.start("host", hosts=False)
        host.register_entity(Moody)
        client = await cluster.start("client", hosts=False)
        await asyncio.sleep(1.0)
        Moody.failures = 1
        with pytest.raises(RuntimeError, match="the store is not ready") as failed:
            await client.entity(Moody, "m").ask(Deposit(id="a", amount=1))
        Moody.failures = 1
        await client.entity(Moody, "n").tell(Deposit(id="t", amount=1))
        await client.wait_until(lambda: Moody.applied == ["t"], deadline=client.now() + 5)
        await cluster.stop()
        return str(failed.value), Moody.applied

    error, applied = sim(main, seed=19)
    assert error == "the store is not ready"
    assert applied == ["t"]
