"""Real node processes on one PostgreSQL: SIGKILL a node while a driver sends work.

Three node processes host ``Account`` entities; the driver (this test's
process, a node that hosts nothing) deposits into several accounts, each
deposit retried by id until it is answered. Mid-run the node running one
account gets SIGKILL. Afterwards every total is exact, every deposit was
applied once, and the killed node's account runs on a survivor. Real time:
a few seconds.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Callable

import pytest
from cluster_helpers import Account, AccountState, Deposit, account_outcome
from cluster_node_program import node_processes
from structlog.testing import capture_logs

import runtime
from runtime import Cluster, Runtime
from runtime.cluster._membership import owner_node

pytestmark = pytest.mark.real_processes

SECRET = "process-test-secret"
KEYS = ["k0", "k1", "k2", "k3"]
DEPOSITS = 12


async def _deposit(rt: Runtime, key: str, i: int) -> None:
    for _attempt in range(200):
        try:
            await rt.entity(Account, key).ask(Deposit(id=f"{key}-{i}", amount=i + 1), timeout=1.0)
            return
        except Exception:
            await asyncio.sleep(0.05)
    raise AssertionError(f"deposit {key}-{i} never went through")


def test_sigkill_of_a_node_loses_nothing_and_its_entity_comes_back_on_a_survivor(
        postgres_url: Callable[..., str]) -> None:
    url = postgres_url()

    async def driver(children: dict[str, subprocess.Popen[str]]) -> tuple[
            dict[str, object], dict[str, AccountState], str, str, float]:
        async with Runtime(store=url, cluster=Cluster(
                listen="127.0.0.1:0", secret=SECRET, name="driver", lease_ttl=1.0)) as rt:
            await rt.wait_until(lambda: len(rt.nodes()) == 4, deadline=rt.now() + 10)
            for i in range(DEPOSITS // 2):
                await asyncio.gather(*(_deposit(rt, key, i) for key in KEYS))
            lease = await rt.store.lease("entity/Account/k0")
            assert lease is not None
            victim = owner_node(lease.owner)
            os.kill(children[victim].pid, signal.SIGKILL)
            killed_at = time.monotonic()
            await _deposit(rt, "k0", DEPOSITS // 2)
            failover = time.monotonic() - killed_at
            for i in range(DEPOSITS // 2 + 1, DEPOSITS):
                await asyncio.gather(*(_deposit(rt, key, i) for key in KEYS))
            await asyncio.gather(*(_deposit(rt, key, DEPOSITS // 2) for key in KEYS[1:]))
            totals, records = await account_outcome(rt, KEYS)
            now_on = await rt.store.lease("entity/Account/k0")
            assert now_on is not None
            return totals, records, victim, owner_node(now_on.owner), failover

    with node_processes(url, ["n1", "n2", "n3"], secret=SECRET, hosts=True, ttl=1.0) \
            as children, capture_logs():
        totals, records, victim, now_on, failover = runtime.run(driver, children)
        assert children[victim].wait(timeout=5) == -signal.SIGKILL

    expected = sum(range(1, DEPOSITS + 1))
    assert totals == {key: expected for key in KEYS}
    for key, state in records.items():
        assert sorted(state.applied) == sorted(f"{key}-{i}" for i in range(DEPOSITS))
    assert now_on != victim and now_on in ("n1", "n2", "n3")
    assert failover <= 1.0 + 2.0  # lease TTL plus a membership refresh and a retry
