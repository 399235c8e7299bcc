"""``shardline run --nodes N``: bad input is exit 2; real node processes are started,
struck by node faults and stopped; simulated nodes replay node faults by seed."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import pytest

from runtime._node_fleet import NodeFleet
from runtime.cli import main

STREAM = """
[scenario]
name = "{name}"
seed = 3
clock = "{clock}"
{header}

[stream]
partitions = 2
workers = 2
batch_size = 50
lease_ttl = "2s"
rate = {rate}
produce_chunk = 50
source = {{ records = {records}, keys = 20, payload_bytes = 16 }}
destination = "dir://{{out}}/sink"

{faults}

[expect]
exactly_once = true
{expect}
"""


def _scenario(tmp_path: Path, *, name: str = "nodes", clock: str = "real", header: str = "",
              faults: str = "", expect: str = "", rate: float = 2000.0,
              records: int = 4000) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(STREAM.format(name=name, clock=clock, header=header, faults=faults,
                                  expect=expect, rate=rate, records=records))
    return path


KILL = '[[faults]]\nkind = "kill_node"\ntarget = "{target}"\nat = "{at}"\n{extra}\n'


@pytest.mark.parametrize(("args", "expected"), [
    (["--nodes", "0", "--store", "postgresql://u:hunter2@h/db"],
     "--nodes: expected at least 1 node, got 0"),
    (["--nodes", "2"],  # the scenario's default store, SQLite
     "--nodes 2: store sqlite:///"),
    (["--nodes", "2", "--store", "memory://"],
     "--nodes 2: store memory://: several nodes need a shared store: postgresql://"),
])
def test_bad_node_counts_and_stores_are_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
        expected: str) -> None:
    file = _scenario(tmp_path)
    assert main(["run", str(file), "--out", str(tmp_path / "out"), *args]) == 2
    err = capsys.readouterr().err
    assert expected in err and "hunter2" not in err and "Traceback" not in err


@pytest.mark.parametrize(("args", "expected"), [
    # the file's clock is simulated (whose in-process nodes may share SQLite): --clock
    # real makes them processes, which need a shared store
    (["--clock", "real", "--nodes", "2"], "--nodes 2: store sqlite:///"),
    (["--clock", "simulated", "--join", "--secret-env", "HOME", "--store",
      "postgresql://u:hunter2@h/db"],
     "scenario.clock: --join drives node processes, which keep the real clock"),
    (["--clock", "sometimes"], "argument --clock: invalid choice: 'sometimes'"),
])
def test_the_clock_option_overrides_the_scenario_and_is_validated(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
        expected: str) -> None:
    file = _scenario(tmp_path, clock="simulated")
    with pytest.raises(SystemExit) if "sometimes" in args else nullcontext() as exited:
        code = main(["run", str(file), "--out", str(tmp_path / "out"), *args])
    assert (exited.value.code if exited is not None else code) == 2
    err = capsys.readouterr().err
    assert expected in err and "hunter2" not in err and "Traceback" not in err


@pytest.mark.parametrize(("header", "faults", "clock", "expected"), [
    ("nodes = 3", KILL.format(target="node-9", at="1s", extra=""), "real",
     "faults[0].target: 'node-9' matches no node; expected a name or glob matching one of: "
     "node-1, node-2, node-3"),
    ("nodes = 2", '[[faults]]\nkind = "partition"\ntarget = "node-1|node-7"\nat = "1s"\n',
     "real", "faults[0].target: 'node-7' matches no node"),
    ("nodes = 0", "", "real", "scenario.nodes: expected at least 1 node, got 0"),
    ("nodes = 2", '[[faults]]\nkind = "pause_node"\ntarget = "node-1"\nat = "1s"\n'
     'restart_after = "1s"\n', "real", "restart_after belongs to kill_node faults"),
])
def test_node_faults_are_validated(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], header: str, faults: str,
        clock: str, expected: str) -> None:
    file = _scenario(tmp_path, header=header, faults=faults, clock=clock)
    assert main(["validate", str(file)]) == 2
    assert expected in capsys.readouterr().err


def test_a_kill_node_target_beyond_the_run_s_nodes_is_exit_2_naming_the_file_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = _scenario(tmp_path, clock="simulated",
                     faults=KILL.format(target="node-2", at="1s", extra=""))
    assert main(["run", str(file), "--nodes", "1", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err == (f"shardline: error: {file}: faults[0].target: 'node-2' matches no node; "
                   "expected a name or glob matching one of: node-1\n")


def test_a_node_fault_in_a_run_without_nodes_is_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = _scenario(tmp_path, faults=KILL.format(target="node-1", at="1s", extra=""))
    assert main(["validate", str(file)]) == 0  # `run --nodes N` may supply the nodes
    assert main(["run", str(file), "--out", str(tmp_path / "out")]) == 2
    assert ("faults[0].kind: a 'kill_node' fault needs nodes: set [scenario] nodes = N or "
            "run with --nodes N") in capsys.readouterr().err


def test_a_run_across_node_processes_kills_one_brings_it_back_and_reports_each(
        tmp_path: Path, postgres_url: Callable[..., str],
        capsys: pytest.CaptureFixture[str]) -> None:
    pause = '[[faults]]\nkind = "pause_node"\ntarget = "node-2"\nat = "0.5s"\nduration = "0.5s"\n'
    file = _scenario(tmp_path, faults=KILL.format(target="node-1", at="0.3s",
                                                  extra='restart_after = "0.5s"') + pause,
                     expect="node_kills = 1\nnode_pauses = 1", clock="simulated")
    out = tmp_path / "out"
    # --clock real: the file's simulated nodes become node processes
    code = main(["run", str(file), "--nodes", "2", "--store", postgres_url(), "--out", str(out),
                 "--json", "--clock", "real"])
    captured = capsys.readouterr()
    assert captured.out, captured.err
    report = json.loads(captured.out)
    assert code == 0, report
    invariants = {i["name"]: i for i in report["invariants"]}
    assert invariants["exercised_node_kills"]["held"]
    assert invariants["exercised_node_pauses"]["held"]
    nodes = report["nodes"]
    assert sorted(nodes) == ["node-1", "node-2"]
    assert nodes["node-1"]["kills"] == 1 and nodes["node-1"]["node_restarts"] == 1
    assert nodes["node-1"]["state"] == "up" and nodes["node-2"]["kills"] == 0
    assert nodes["node-2"]["pauses"] == 1 and nodes["node-2"]["state"] == "up"  # SIGCONT came
    assert all(n["actors"] >= 1 and n["messages"] >= 1 for n in nodes.values())
    assert all(n["cpu_s"] > 0 for n in nodes.values())  # each node process's own CPU time
    assert (out / "nodes" / "node-1.log").exists()


def test_a_node_that_cannot_join_is_named(
        tmp_path: Path, postgres_url: Callable[..., str],
        capsys: pytest.CaptureFixture[str]) -> None:
    url = postgres_url()
    squatter = NodeFleet(url, "another-secret", tmp_path / "squatter", lease_ttl=2.0,
                         systems=["stream"])
    squatter.start(["node-2"])  # the name the run's second node needs
    try:
        code = main(["run", str(_scenario(tmp_path)), "--nodes", "2", "--store", url,
                     "--out", str(tmp_path / "out")])
    finally:
        squatter.stop()
    assert code == 2
    assert "node node-2 could not join" in capsys.readouterr().err


def _simulated(tmp_path: Path, seed: int) -> dict[str, object]:
    faults = (KILL.format(target="node-2", at="0.5s", extra='restart_after = "3s"')
              + '[[faults]]\nkind = "pause_node"\ntarget = "node-3"\nat = "1s"\n'
              'duration = "0.5s"\n'
              '[[faults]]\nkind = "partition"\ntarget = "node-1|node-*"\nat = "2s"\n'
              'duration = "1s"\n'
              '[[faults]]\nkind = "kill_node"\ntarget = "node-3"\nprobability = 1.0\n'
              'count = 1\nstart = "4s"\n')
    file = _scenario(tmp_path, clock="simulated", header='store = "memory://"\nnodes = 3',
                     faults=faults, expect="node_kills = 2\nnode_pauses = 1\n"
                     "node_partitions = 1", rate=1000.0, records=6000)
    assert main(["run", str(file), "--seed", str(seed), "--out", str(tmp_path / f"o{seed}"),
                 "--json"]) == 0
    return {}


def test_simulated_nodes_take_node_faults_and_replay_by_seed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _simulated(tmp_path, 5)
    first = json.loads(capsys.readouterr().out)
    _simulated(tmp_path, 5)
    again = json.loads(capsys.readouterr().out)
    held = {i["name"]: i["held"] for i in first["invariants"]}
    assert held["exercised_node_kills"] and held["exercised_node_pauses"]
    assert held["exercised_node_partitions"]
    assert first["nodes"]["node-2"]["kills"] == 1
    assert first["nodes"]["node-2"]["node_restarts"] == 1
    assert first["nodes"]["node-3"]["pauses"] == 1
    assert first["nodes"]["node-3"]["kills"] == 1  # the probability fault, once (count)
    assert first["nodes"]["node-3"]["state"] == "killed"
    assert all(n["cpu_s"] is None for n in first["nodes"].values())  # they share this process
    assert first["trace_digest"] == again["trace_digest"]
    assert first["nodes"] == again["nodes"]
