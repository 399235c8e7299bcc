"""Shared pieces of the cluster tests: an Account entity and simulated clusters.

``Account`` is the entity of the issue: it rebuilds from the shared store in
``recover``, deduplicates deposits by id, and writes with compare-and-set
under its activation's fence. Every successful write is journaled (with
the fencing token it carried) so tests can check that no two activations
ever wrote interleaved.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from typing import ClassVar

import msgspec

from runtime import Actor, Clock, Cluster, Fault, Message, Runtime
from runtime.cluster import SimulatedNetwork
from runtime.store import Put, Store, open_store

SECRET = "test-cluster-secret"


class Deposit(Message, frozen=True):
    id: str
    amount: int


class Balance(Message, frozen=True):
    pass


class AccountState(msgspec.Struct):
    total: int = 0
    applied: list[str] = msgspec.field(default_factory=list)


class Account(Actor[Deposit | Balance]):
    """At most one live activation per key; exactly-once effects by id and fence."""

    journal: ClassVar[list[tuple[float, str, int, int]]] = []
    """(loop time, key, fencing token, new total) of every successful write."""
    recovered: ClassVar[list[tuple[str, str, int]]] = []
    """(node, key, token) of every ``recover``."""

    async def recover(self) -> None:
        found = await self.runtime.store.get(f"acct/{self.entity_key}")
        self.version = found.version if found is not None else 0
        self.state = (msgspec.msgpack.decode(found.value, type=AccountState)
                      if found is not None else AccountState())
        Account.recovered.append((self.runtime.node_name or "", self.entity_key,
                                  self.fence.token))

    async def receive(self, msg: Deposit | Balance) -> int:
        if isinstance(msg, Balance) or msg.id in self.state.applied:
            return self.state.total
        key = f"acct/{self.entity_key}"
        new = AccountState(self.state.total + msg.amount, [*self.state.applied, msg.id])
        result = await self.runtime.store.write(
            [Put(key, msgspec.msgpack.encode(new), expect_version=self.version)],
            fence=self.fence)
        self.version = result.versions[key]
        self.state = new
        Account.journal.append((asyncio.get_running_loop().time(), self.entity_key,
                                self.fence.token, new.total))
        return new.total


async def account_outcome(rt: Runtime, keys: Sequence[str]) -> tuple[
        dict[str, object], dict[str, AccountState]]:
    """Each account's balance as its entity answers it, and its state as stored."""
    totals = {key: await rt.entity(Account, key).ask(Balance(), timeout=5.0) for key in keys}
    records = {key: msgspec.msgpack.decode(found.value, type=AccountState) for key in keys
               if (found := await rt.store.get(f"acct/{key}")) is not None}
    return totals, records


async def shared_memory_store() -> Store:
    """One ``memory://`` store for every node of a simulated cluster, on its clock."""
    return await open_store("memory://", clock=Clock(asyncio.get_running_loop(), True).wall)


class SimCluster:
    """Nodes on one simulated network and one shared store; start, kill, stop them."""

    def __init__(self, net: SimulatedNetwork, store: Store, **config: object) -> None:
        self.net = net
        self.store = store
        self.config = config
        self.runtimes: dict[str, Runtime] = {}
        self.digests: list[str] = []

    async def start(self, name: str, *, hosts: bool = True,
                    faults: Sequence[Fault] = ()) -> Runtime:
        rt = Runtime(store=self.store, faults=faults, cluster=Cluster(
            listen=name, secret=SECRET, name=name, network=self.net,
            **self.config))  # type: ignore[arg-type]
        await rt.__aenter__()
        if hosts:
            rt.register_entity(Account)
        self.runtimes[name] = rt
        return rt

    def kill(self, name: str) -> None:
        self.net.kill_node(name)
        self.digests.append(self.runtimes.pop(name).trace.digest)

    async def stop(self) -> None:
        for name in list(self.runtimes):
            rt = self.runtimes.pop(name)
            await rt.shutdown()
            self.digests.append(rt.trace.digest)

    def digest(self) -> str:
        """One digest over every node's trace and the network's."""
        h = hashlib.blake2b(digest_size=16)
        for part in [*self.digests, *(rt.trace.digest for rt in self.runtimes.values()),
                     self.net.trace.digest]:
            h.update(part.encode())
        return h.hexdigest()


def reset_account_journal() -> None:
    Account.journal = []
    Account.recovered = []


async def replay_program(seed: int) -> str:
    """A small cluster story under faults; returns its digest (for replay tests)."""
    net = SimulatedNetwork(drop=0.05, duplicate=0.05)
    cluster = SimCluster(net, await shared_memory_store(), lease_ttl=1.0)
    for name in ("n1", "n2", "n3"):
        await cluster.start(name)
    client = await cluster.start("client", hosts=False)
    await asyncio.sleep(1.0)
    for i in range(20):
        if i == 5:
            net.partition(["n1"], ["n2", "n3", "client"])
        if i == 10:
            net.heal()
            cluster.kill("n2")
        for _ in range(20):
            try:
                await client.entity(Account, f"k{i % 3}").ask(Deposit(id=f"d{i}", amount=i),
                                                             timeout=1.0)
                break
            except Exception:
                continue
    digest = cluster.digest()
    await cluster.stop()
    return digest
