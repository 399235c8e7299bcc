"""Real node processes on one PostgreSQL: a cluster-network partition (``CutLinks``).

Three node processes host ``Account`` entities; the driver (this test's process) deposits
into several accounts. Mid-run the node running account ``k0`` is cut off from every
other node and from the driver for two seconds through its agent (the store stays
reachable from both sides). Its entity keeps its lease (same fencing token before and
after: nobody else activated it, so there was one writer), the deposit sent to it during
the cut goes through only after the heal, the other accounts carry on meanwhile, and
every total is exact afterwards. Real time: a few seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from cluster_helpers import AccountState, account_outcome
from cluster_node_program import node_processes
from structlog.testing import capture_logs
from test_cluster_processes import _deposit

import runtime
from runtime import Cluster, Runtime
from runtime.cluster._agent import AGENT_NAME, NodeAgent, cut_apart
from runtime.cluster._membership import owner_node

pytestmark = pytest.mark.real_processes

SECRET = "partition-test-secret"
KEYS = ["k0", "k1", "k2", "k3"]
NODES = ["n1", "n2", "n3"]
DEPOSITS = 6
CUT = 2.0


def test_a_partitioned_node_keeps_its_leases_and_nothing_is_lost_after_the_heal(
        postgres_url: Callable[..., str]) -> None:
    url = postgres_url()

    async def driver() -> tuple[dict[str, object], dict[str, AccountState], int, int, float,
                                float, list[str]]:
        async with Runtime(store=url, cluster=Cluster(
                listen="127.0.0.1:0", secret=SECRET, name="driver", lease_ttl=1.0)) as rt:
            await rt.spawn(NodeAgent, name=AGENT_NAME)  # so the driver's side cuts too
            await rt.wait_until(lambda: len(rt.nodes()) == 4, deadline=rt.now() + 10)
            for i in range(DEPOSITS // 2):
                await asyncio.gather(*(_deposit(rt, key, i) for key in KEYS))
            before = await rt.store.lease("entity/Account/k0")
            assert before is not None
            victim = owner_node(before.owner)
            others = [key for key in KEYS[1:] if (lease := await rt.store.lease(
                f"entity/Account/{key}")) is not None and owner_node(lease.owner) != victim]
            missed = await cut_apart(rt, [[victim], ["driver", *(n for n in NODES
                                                                  if n != victim)]], CUT)
            cut_at = time.monotonic()
            k0 = asyncio.ensure_future(_deposit(rt, "k0", DEPOSITS // 2))
            await asyncio.gather(*(_deposit(rt, key, DEPOSITS // 2) for key in others))
            others_took = time.monotonic() - cut_at
            await k0
            k0_took = time.monotonic() - cut_at
            for i in range(DEPOSITS // 2 + 1, DEPOSITS):
                await asyncio.gather(*(_deposit(rt, key, i) for key in KEYS))
            await asyncio.gather(*(_deposit(rt, key, DEPOSITS // 2) for key in KEYS[1:]
                                   if key not in others))
            totals, records = await account_outcome(rt, KEYS)
            after = await rt.store.lease("entity/Account/k0")
            assert after is not None
            return (totals, records, before.token, after.token, k0_took, others_took,
                    missed)

    with node_processes(url, NODES, secret=SECRET, hosts=True, ttl=1.0), \
            capture_logs() as logs:
        totals, records, before, after, k0_took, others_took, missed = runtime.run(driver)

    assert missed == [], [e for e in logs if e["event"] == "node.cut_failed"]
    assert before == after  # k0 kept its lease through the partition: one writer
    assert k0_took >= CUT - 0.1  # the deposit to the cut node waited for the heal
    assert others_took < CUT  # the rest of the cluster carried on meanwhile
    expected = sum(range(1, DEPOSITS + 1))
    assert totals == {key: expected for key in KEYS}
    for key, state in records.items():
        assert sorted(state.applied) == sorted(f"{key}-{i}" for i in range(DEPOSITS))
