"""The stream across nodes: one worker per node, partition leases balanced as KCL does.

Simulated (seeded simulated nodes in this process): the balancing rule on its
own (``plan_takes``), the balance of a live cluster through a kill and a
restart, ``scenarios/stream_node_kill.toml`` and ``stream_node_pause.toml``,
and random node kills by seed. Real: three ``shardline node`` processes on
PostgreSQL, one SIGKILLed mid-stream.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from actors.stream import GeneratedSource, StreamConfig, StreamJob, open_destination
from actors.stream import _keys as keys
from actors.stream._balance import Take, plan_takes, share_of
from actors.stream._checks import check_stream
from actors.stream._node_driver import StreamOnNodes
from runtime import Fault, Runtime, run
from runtime.scenario._nodes import ProcessNodes, SimulatedNodes, start_nodes
from tests.scenario_helpers import run_json, with_faults

ROOT = Path(__file__).resolve().parents[1]
WORKERS = ["w1", "w2", "w3"]


# -- the rule -----------------------------------------------------------------

def _settle(owners: dict[int, str], workers: list[str], partitions: int,
            rounds: int = 30) -> dict[int, str]:
    """Rounds of every worker balancing in turn (a steal ousts its victim at once)."""
    rng = random.Random(4)
    for _ in range(rounds):
        for worker in workers:
            for take in plan_takes(worker, partitions, owners, set(workers), rng.choice):
                owners[take.partition] = worker
    return owners


def test_the_share_is_the_ceiling_of_partitions_over_workers() -> None:
    assert [share_of(8, n) for n in (1, 2, 3, 4, 8, 9)] == [8, 4, 3, 2, 1, 1]


def test_a_short_worker_takes_free_leases_first_then_steals_one_from_the_most_loaded() -> None:
    owners = {0: "w1", 1: "w1", 2: "w1", 3: "w1", 4: "w2", 5: "w2"}
    takes = plan_takes("w3", 8, owners, set(WORKERS), lambda xs: xs[0])
    assert takes == [Take(6), Take(7)]  # free ones, as many as it lacks (share 3)
    owners.update({6: "w1", 7: "w2"})  # w1 5, w2 3, w3 0: nothing free
    assert plan_takes("w3", 8, owners, set(WORKERS), lambda xs: xs[0]) == [Take(0, "w1")]
    # at 3, 3, 2 nobody holds more than the share: no steal, no churn
    settled = {0: "w1", 1: "w1", 2: "w1", 3: "w2", 4: "w2", 5: "w2", 6: "w3", 7: "w3"}
    assert all(plan_takes(w, 8, settled, set(WORKERS), lambda xs: xs[0]) == []
               for w in WORKERS)


def test_eight_partitions_over_three_workers_settle_at_two_or_three_each() -> None:
    owners = _settle({}, WORKERS, 8)
    assert sorted(Counter(owners.values()).values()) == [2, 3, 3]
    for partitions in (1, 5, 12, 31):
        load = Counter(_settle({}, WORKERS, partitions).values())
        assert sum(load.values()) == partitions
        assert max(load.values()) <= share_of(partitions, 3)


def test_a_dead_workers_leases_go_to_the_others_and_it_wins_its_share_back() -> None:
    owners = _settle({}, WORKERS, 8)
    gone = {p: w for p, w in owners.items() if w != "w2"}  # w2's leases expired
    moved = _settle(gone, ["w1", "w3"], 8)
    assert Counter(moved.values()) == {"w1": 4, "w3": 4}
    back = _settle(moved, WORKERS, 8)
    assert sorted(Counter(back.values()).values()) == [2, 3, 3]


# -- a live cluster -----------------------------------------------------------

async def _owners(rt: Runtime, stream: str) -> Counter[str]:
    return Counter(lease.owner.rsplit("worker-", 1)[1]
                   for lease in await rt.store.leases(keys.lease_prefix(stream)))


def test_three_nodes_balance_eight_partitions_through_a_kill_and_a_restart(
        tmp_path: Path) -> None:
    """Three live nodes hold 2-3 leases each; node-2 killed, its leases move to node-1
    and node-3 (4 each); node-2 back, it steals its share back; the sink exactly once."""
    config = StreamConfig(source=GeneratedSource(records=30_000, keys=200, payload_bytes=16),
                          partitions=8, lease_ttl=1.0, rate=2000.0, batch_cost=0.02,
                          produce_chunk=200, rebalance_interval=0.2,
                          destination=f"dir://{tmp_path}/sink")

    async def scenario() -> tuple[list[Counter[str]], list[str]]:
        nodes = SimulatedNodes(3)
        async with Runtime(store="memory://", cluster=nodes.driver_cluster()) as rt:
            await start_nodes(nodes, rt, [])
            job = StreamJob(rt, config, workers_on_nodes=True,
                            destination=open_destination(config.destination, threaded=False))
            driver = StreamOnNodes(job, config.destination)
            await job.start()
            await driver.start()
            seen = []
            await rt.sleep(3.0)
            seen.append(await _owners(rt, config.name))
            nodes.kill("node-2", Fault(kind="kill_node", target="node-2", at=0.0,
                                       restart_after=3.0))
            await rt.sleep(2.5)
            seen.append(await _owners(rt, config.name))
            await rt.sleep(6.0)
            seen.append(await _owners(rt, config.name))
            assert await job.wait_done(deadline=rt.now() + 30.0)
            await driver.stop()
            await job.stop()
            checked = [i.detail for i in await check_stream(job, None) if not i.held]
            await job.close()
            await nodes.stop()
            return seen, checked

    (before, down, back), failed = run(scenario, simulated=True, seed=2)
    assert sorted(before.values()) == [2, 3, 3], before
    assert down == {"node-1": 4, "node-3": 4}, down
    assert sorted(back.values()) == [2, 3, 3] and back["node-2"] >= 2, back
    assert failed == []


# -- the scenarios --------------------------------------------------------------

def test_killing_a_node_again_and_again_keeps_the_stream_exactly_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = str(ROOT / "scenarios" / "stream_node_kill.toml")
    report = run_json(capsys, file, "--out", str(tmp_path / "a"))
    nodes: dict[str, dict[str, int]] = report["nodes"]
    assert nodes["node-2"]["kills"] == 3 and nodes["node-2"]["node_restarts"] == 3
    per_node: dict[str, dict[str, int]] = report["stream_nodes"]
    assert per_node["node-2"]["incarnations"] >= 2
    assert per_node["node-2"]["leases_stolen"] >= 2  # back, it won its share back
    metrics: dict[str, int] = report["metrics"]
    assert metrics["records_committed"] == 30_000 and metrics["lease_moves"] > 8


def test_a_paused_nodes_late_commit_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """node-1 sleeps 4 s with batches in flight under 1 s leases: the others take its
    partitions; awake, its own late commits are refused, and it steals its share back."""
    file = str(ROOT / "scenarios" / "stream_node_pause.toml")
    report = run_json(capsys, file, "--out", str(tmp_path / "a"))
    nodes: dict[str, dict[str, int]] = report["nodes"]
    assert nodes["node-1"]["pauses"] == 1 and nodes["node-1"]["kills"] == 0
    per_node: dict[str, dict[str, object]] = report["stream_nodes"]
    paused = per_node["node-1"]
    assert int(paused["late_commits_refused"]) >= 1
    assert int(paused["leases_stolen"]) >= 2
    assert len(paused["held"]) in (2, 3)
    again = run_json(capsys, file, "--out", str(tmp_path / "b"))  # a seed replays node faults
    assert again["trace_digest"] == report["trace_digest"]
    assert again["stream_nodes"] == report["stream_nodes"]


RANDOM_KILLS = """[[faults]]
kind = "kill_node"
target = "node-*"
probability = 0.1
count = 4
restart_after = "2s"
"""


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_node_kills_by_seed_keep_the_stream_exactly_once_and_in_order(
        seed: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Any node may die at any second (a draw per node per second), up to four times."""
    file = with_faults(ROOT / "scenarios" / "stream_node_kill.toml", RANDOM_KILLS, tmp_path,
                       expect="[expect]\nnode_kills = 1\n")
    file.write_text(file.read_text().replace("records = 20000", "records = 12000"))
    report = run_json(capsys, str(file), "--seed", str(seed), "--out", str(tmp_path / "out"))
    held = {i["name"] for i in report["invariants"]}
    assert {"exactly_once", "order", "no_stale_commit", "exercised_node_kills"} <= held
    nodes: dict[str, dict[str, int]] = report["nodes"]
    assert 1 <= sum(n["kills"] for n in nodes.values()) <= 4


@pytest.mark.real_processes
def test_a_node_process_sigkilled_mid_stream_loses_and_repeats_nothing(
        tmp_path: Path, postgres_url: Callable[..., str]) -> None:
    """Three ``shardline node`` processes on PostgreSQL; node-2 is SIGKILLed (for good)
    once its worker holds leases; the survivors take them over; the sink exactly once."""
    url = postgres_url()
    config = StreamConfig(source=GeneratedSource(records=5000, keys=100, payload_bytes=16),
                          partitions=6, lease_ttl=1.0, rate=2000.0, batch_size=200,
                          produce_chunk=200, rebalance_interval=0.2,
                          destination=f"dir://{tmp_path}/sink")

    async def scenario() -> tuple[list[int], Counter[str], list[str]]:
        nodes = ProcessNodes(3, url, tmp_path / "nodes", systems=["stream"])
        async with Runtime(store=url, cluster=nodes.driver_cluster()) as rt:
            await start_nodes(nodes, rt, [])
            try:
                job = StreamJob(rt, config, workers_on_nodes=True, destination=open_destination(
                    config.destination, threaded=True))
                driver = StreamOnNodes(job, config.destination)
                await job.start()
                await driver.start()
                assert await rt.wait_until(
                    lambda: "node-2" in driver.latest and bool(driver.latest["node-2"].held),
                    deadline=rt.now() + 20.0)
                held = driver.latest["node-2"].held
                nodes.kill("node-2", Fault(kind="kill_node", target="node-2", at=0.0))
                assert await job.wait_done(deadline=rt.now() + 30.0)
                after = await _owners(rt, config.name)
                await driver.stop()
                await job.stop()
                failed = [i.detail for i in await check_stream(job, None) if not i.held]
                await job.close()
            finally:
                await nodes.stop()
        return held, after, failed

    held, after, failed = run(scenario)
    assert held  # the kill struck a worker holding leases
    assert "node-2" not in after and sum(after.values()) == 6, after
    assert failed == []
