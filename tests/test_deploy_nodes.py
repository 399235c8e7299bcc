"""The deploy system across nodes: the controller is a cluster entity; killing its node
mid-stage resumes the stage on a survivor with the same verdicts.

Simulated: ``scenarios/deploy_node_kill.toml`` (three seeded simulated nodes, node-1,
where the controller runs, killed mid-experiment and restarted). Real: three
``shardline node`` processes on PostgreSQL, the controller's node SIGKILLed at 1.5 s
of a 3 s experiment bake (about ten seconds of wall time).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from runtime.cluster._membership import rendezvous
from tests.scenario_helpers import run_json, with_faults

ROOT = Path(__file__).resolve().parents[1]
NODES = ["node-1", "node-2", "node-3"]


def test_the_controller_sits_where_the_scenarios_kill() -> None:
    """Both scenarios target node-1 because rendezvous places deployment deploy-1 there."""
    assert rendezvous("DeploymentControllerEntity", "deploy-1", NODES) == "node-1"


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
    # while node-1 was down a survivor ran the controller; back, node-1 won it again
    assert sum(nodes[n]["activations"] for n in ("node-2", "node-3")) >= 1  # type: ignore[misc]
    assert nodes["node-1"]["activations"] == 1
    experiment = report["stages"][0]  # type: ignore[index]
    assert experiment["started_at"] < 50.0 < experiment["decided_at"]  # killed mid-bake
    again = run_json(capsys, file, "--out", str(tmp_path / "b"))
    assert again["trace_digest"] == report["trace_digest"]
    assert again["nodes"] == report["nodes"]


def test_killing_the_controllers_node_process_mid_stage_keeps_the_verdict(
        tmp_path: Path, postgres_url: Callable[..., str],
        capsys: pytest.CaptureFixture[str]) -> None:
    report = run_json(capsys, str(ROOT / "tests" / "deploy_real_nodes.toml"), "--nodes", "3",
                  "--store", postgres_url(), "--out", str(tmp_path / "out"))
    held = {i["name"]: i["held"] for i in report["invariants"]}  # type: ignore[attr-defined]
    assert all(held.values()) and held["exercised_node_kills"] and held["converged"]
    assert report["metrics"]["verdict_config_a"] == "approved"  # type: ignore[index]
    nodes: dict[str, dict[str, object]] = report["nodes"]  # type: ignore[assignment]
    assert nodes["node-1"]["state"] == "killed" and nodes["node-1"]["kills"] == 1
    # a survivor took the controller over (under heavy load its lease can lapse once
    # more and the other survivor take it: fenced, so still one writer at a time)
    assert sum(nodes[n]["activations"] for n in ("node-2", "node-3")) >= 1  # type: ignore[misc]
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
    # a survivor took the controller over while node-1 slept; node-1 won it back after
    assert sum(nodes[n]["activations"] for n in ("node-2", "node-3")) >= 1  # type: ignore[misc]
    assert nodes["node-1"]["activations"] == 2


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
