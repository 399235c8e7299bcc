"""The deploy system across nodes: the controller and the hosts are cluster entities spread
over the nodes; killing the node of the controller and of half the hosts mid-stage resumes
the stage on a survivor with the same verdicts, the hosts move and carry their assignments.

Simulated: ``scenarios/deploy_node_kill.toml`` (three seeded simulated nodes, node-1,
where the controller runs, killed mid-experiment and restarted). Real: three
``shardline node`` processes on PostgreSQL, the controller's node SIGKILLed at 1.5 s
of a 3 s experiment bake (about ten seconds of wall time).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

import runtime
from actors.deploy._keys import ledger_log
from actors.deploy._ledger import Applied
from actors.deploy._ledger_log import LedgerEntry
from runtime import Runtime
from runtime.cluster._membership import rendezvous
from tests.scenario_helpers import run_json, with_faults

ROOT = Path(__file__).resolve().parents[1]
NODES = ["node-1", "node-2", "node-3"]


HOSTS = [f"deploy-1/deploy.host-{i}" for i in range(6)]
ON_NODE_1 = 3
"""Hosts of the six-host scenarios that rendezvous places on node-1 (with the controller)."""


def test_the_controller_sits_where_the_scenarios_kill_and_the_hosts_spread() -> None:
    """The scenarios target node-1 because rendezvous places deployment deploy-1 there;
    the six hosts of the scenarios are spread over all three nodes, three on node-1."""
    assert rendezvous("DeploymentControllerEntity", "deploy-1", NODES) == "node-1"
    placed = [rendezvous("DeploymentHostEntity", key, NODES) for key in HOSTS]
    assert set(placed) == set(NODES) and placed.count("node-1") == ON_NODE_1
    real = [rendezvous("DeploymentHostEntity", key, NODES) for key in HOSTS[:4]]
    assert real.count("node-1") == 2  # deploy_real_node_kill.toml: 2 of its 4 hosts die


def test_killing_the_controllers_simulated_node_mid_bake_keeps_the_verdicts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = str(ROOT / "scenarios" / "deploy_node_kill.toml")
    report = run_json(capsys, file, "--out", str(tmp_path / "a"))
    held = {i["name"]: i["held"] for i in report["invariants"]}  # type: ignore[attr-defined]
    assert all(held.values()) and held["exercised_node_kills"]
    assert report["metrics"]["verdict_config_a"] == "approved"  # type: ignore[index]
    assert report["metrics"]["verdict_config_b"] == "rejected"  # type: ignore[index]
    nodes: dict[str, dict[str, object]] = report["nodes"]  # type: ignore[assignment]
    assert nodes["node-1"]["kills"] == 1 and nodes["node-1"]["node_restarts"] == 1
    # while node-1 was down survivors ran the controller and node-1's three hosts; back,
    # node-1 won all four again (the hosts read their assignments from the store each time)
    assert sum(nodes[n]["activations"] for n in ("node-2", "node-3")) \
        >= 1 + ON_NODE_1 + 3  # type: ignore[operator]
    assert nodes["node-1"]["activations"] == 1 + ON_NODE_1
    assert report["metrics"]["host_restarts"] == 2 * ON_NODE_1  # type: ignore[index]
    experiment = report["stages"][0]  # type: ignore[index]
    assert experiment["started_at"] < 50.0 < experiment["decided_at"]  # killed mid-bake
    again = run_json(capsys, file, "--out", str(tmp_path / "b"))
    assert again["trace_digest"] == report["trace_digest"]
    assert again["nodes"] == report["nodes"]


def test_killing_the_controllers_node_process_mid_stage_keeps_the_verdict(
        tmp_path: Path, postgres_url: Callable[..., str],
        capsys: pytest.CaptureFixture[str]) -> None:
    report = run_json(capsys, str(ROOT / "scenarios" / "deploy_real_node_kill.toml"),
                  "--store", postgres_url(), "--out", str(tmp_path / "out"))
    held = {i["name"]: i["held"] for i in report["invariants"]}  # type: ignore[attr-defined]
    assert all(held.values()) and held["exercised_node_kills"] and held["converged"]
    assert report["metrics"]["verdict_config_a"] == "approved"  # type: ignore[index]
    nodes: dict[str, dict[str, object]] = report["nodes"]  # type: ignore[assignment]
    assert nodes["node-1"]["state"] == "killed" and nodes["node-1"]["kills"] == 1
    # survivors took the controller and node-1's two hosts over (under heavy load a lease
    # can lapse once more and the other survivor take it: fenced, one writer at a time)
    assert sum(nodes[n]["activations"] for n in ("node-2", "node-3")) \
        >= 1 + 2 + 2  # type: ignore[operator]
    experiment = report["stages"][0]  # type: ignore[index]
    assert experiment["started_at"] < 1.5 < experiment["decided_at"]


def test_pausing_the_controllers_simulated_node_moves_it_and_keeps_the_verdicts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = run_json(capsys, str(ROOT / "scenarios" / "deploy_node_pause.toml"),
                  "--out", str(tmp_path))
    held = {i["name"]: i["held"] for i in report["invariants"]}  # type: ignore[attr-defined]
    assert all(held.values()) and held["exercised_node_pauses"]
    nodes: dict[str, dict[str, object]] = report["nodes"]  # type: ignore[assignment]
    assert nodes["node-1"]["pauses"] == 1 and nodes["node-1"]["kills"] == 0
    # survivors took the controller and the three hosts over while node-1 slept; node-1
    # found its leases gone when it woke, and won the four back after
    assert sum(nodes[n]["activations"] for n in ("node-2", "node-3")) \
        >= 1 + ON_NODE_1  # type: ignore[operator]
    assert nodes["node-1"]["activations"] == 2 * (1 + ON_NODE_1)


RANDOM_KILLS = """[[faults]]
kind = "kill_node"
target = "node-*"
probability = 0.004
count = 4
restart_after = "5s"
"""


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_node_kills_by_seed_keep_the_deployment_correct(
        seed: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Any node may die at any second (a draw per node per second), up to four times."""
    file = with_faults(ROOT / "scenarios" / "deploy_node_kill.toml", RANDOM_KILLS, tmp_path)
    report = run_json(capsys, str(file), "--seed", str(seed), "--out", str(tmp_path / "out"))
    held = {i["name"]: i["held"] for i in report["invariants"]}  # type: ignore[attr-defined]
    assert all(held.values()), report["invariants"]
    nodes: dict[str, dict[str, object]] = report["nodes"]  # type: ignore[assignment]
    kills = sum(n["kills"] for n in nodes.values())  # type: ignore[misc]
    assert 1 <= kills <= 4


def _applied(store: str) -> list[Applied]:
    """Every revision a host applied, as the nodes journaled it (``_ledger_log``)."""

    async def read(rt: Runtime) -> list[Applied]:
        found: list[Applied] = []
        for entry in await rt.store.read(ledger_log("deploy-1"), 0, 1_000_000):
            found += [e for e in msgspec.msgpack.decode(entry.payload, type=list[LedgerEntry])
                      if isinstance(e, Applied)]
        return found

    async def main() -> list[Applied]:
        async with Runtime(store=store) as rt:
            return await read(rt)

    return runtime.run(main)


def test_a_partition_keeps_the_leases_and_the_cut_off_hosts_pull_their_assignments(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """node-1 (controller, three hosts) cut off from node-2 and node-3 for 60 s across the
    end of config_a's experiment: nothing moves (the store stays reachable, so every lease
    is renewed), and the hosts on the other side apply the next revisions from the store."""
    report = run_json(capsys, str(ROOT / "scenarios" / "deploy_node_partition.toml"),
                  "--out", str(tmp_path))
    held = {i["name"]: i["held"] for i in report["invariants"]}  # type: ignore[attr-defined]
    assert all(held.values()) and held["exercised_node_partitions"]
    nodes: dict[str, dict[str, object]] = report["nodes"]  # type: ignore[assignment]
    assert nodes["node-1"]["activations"] == 1 + ON_NODE_1
    assert report["metrics"]["host_restarts"] == 0  # type: ignore[index]
    pulled = {a.host for a in _applied(f"sqlite:///{tmp_path}/state.db") if a.how == "pull"}
    on_node_1 = {f"deploy.host-{i}" for i in (1, 3, 5)}
    assert pulled and not pulled & on_node_1  # only the cut-off side had to pull


@pytest.mark.real_processes
def test_a_partition_of_node_processes_keeps_the_verdict(
        tmp_path: Path, postgres_url: Callable[..., str],
        capsys: pytest.CaptureFixture[str]) -> None:
    """Each node's agent cuts its own links (``tests/test_cluster_partition.py`` proves what
    a cut does to the traffic); the hosts on node-3 pull what node-1's controller
    decided meanwhile."""
    store = postgres_url()
    report = run_json(capsys, str(ROOT / "tests" / "deploy_real_partition.toml"), "--nodes", "3",
                  "--store", store, "--out", str(tmp_path / "out"))
    held = {i["name"]: i["held"] for i in report["invariants"]}  # type: ignore[attr-defined]
    assert all(held.values()) and held["exercised_node_partitions"] and held["converged"]
    logs = {name: (tmp_path / "out" / "nodes" / f"{name}.log").read_text() for name in NODES}
    assert all('"node.partitioned"' in text for text in logs.values())
    # node-3's hosts could only learn what node-1's controller decided across the cut by
    # pulling it from the store (node-1's own hosts may pull too, when a report's re-read
    # comes between the controller's write and its push: a race, not a partition)
    assert {a.host for a in _applied(store) if a.how == "pull"} & {
        "deploy.host-0", "deploy.host-2"}


@pytest.mark.real_processes
def test_pausing_the_controllers_node_process_moves_it_and_keeps_the_verdict(
        tmp_path: Path, postgres_url: Callable[..., str],
        capsys: pytest.CaptureFixture[str]) -> None:
    """SIGSTOP for twice the lease TTL: the survivors activate the controller and node-1's
    two hosts; node-1 wakes as a zombie whose fenced writes would be refused."""
    report = run_json(capsys, str(ROOT / "tests" / "deploy_real_pause.toml"), "--nodes", "3",
                  "--store", postgres_url(), "--out", str(tmp_path / "out"))
    held = {i["name"]: i["held"] for i in report["invariants"]}  # type: ignore[attr-defined]
    assert all(held.values()) and held["exercised_node_pauses"] and held["converged"]
    nodes: dict[str, dict[str, object]] = report["nodes"]  # type: ignore[assignment]
    assert nodes["node-1"]["state"] == "up" and nodes["node-1"]["pauses"] == 1
    assert sum(nodes[n]["activations"] for n in ("node-2", "node-3")) \
        >= 1 + 2 + 2  # type: ignore[operator]
