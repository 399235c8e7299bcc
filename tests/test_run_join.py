"""``shardline run --join``: a scenario driven through node processes started by hand.

Two ``shardline node`` processes are started the way a user starts them (the test's
``NodeFleet`` only stands in for the user's shell); ``shardline run ... --join`` joins
their cluster as the driver, runs a deployment across them, and kills node-1 through its
agent (the process SIGKILLs itself). Every bad input is exit 2 naming what is wrong.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from runtime._node_fleet import SECRET_ENV, NodeFleet
from runtime.cli import main
from runtime.scenario import _join

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "scenarios" / "deploy_real_node_kill.toml"  # kill_node node-1 at 1.5 s
SECRET = "join-test-secret"


@pytest.fixture
def cluster(request: pytest.FixtureRequest, tmp_path: Path,
            postgres_url: Callable[..., str]) -> Iterator[tuple[str, NodeFleet]]:
    """Two nodes started by hand; every system on them, or only those of an indirect
    parameter (``shardline node --systems``: a node without deploy starts in a third
    of the time, and a restarted node must start with the same option)."""
    url = postgres_url()
    fleet = NodeFleet(url, SECRET, tmp_path / "by-hand", lease_ttl=2.0,
                      systems=getattr(request, "param", None))
    fleet.start(["node-1", "node-2"])
    try:
        yield url, fleet
    finally:
        fleet.stop()


def _secret_file(tmp_path: Path, text: str = SECRET) -> str:
    path = tmp_path / "secret"
    path.write_text(text + "\n")
    return str(path)


def _variant(tmp_path: Path, old: str, new: str) -> str:
    """The scenario with ``old`` replaced, and no ``nodes = 3`` (which would check node
    targets against node-1..3 at load time; a joined cluster's names are its own)."""
    text = DEPLOY.read_text().replace("nodes = 3\n", "")
    assert old in text
    path = tmp_path / "variant.toml"
    path.write_text(text.replace(old, new))
    return str(path)


@pytest.mark.real_processes
def test_a_run_joins_a_cluster_started_by_hand_and_kills_a_node_through_its_agent(
        tmp_path: Path, cluster: tuple[str, NodeFleet],
        capsys: pytest.CaptureFixture[str]) -> None:
    url, fleet = cluster
    code = main(["run", str(DEPLOY), "--store", url, "--join", "--secret-file",
                 _secret_file(tmp_path), "--out", str(tmp_path / "out"), "--json"])
    captured = capsys.readouterr()
    assert captured.out, captured.err
    report = json.loads(captured.out)
    assert code == 0, report["invariants"]
    held = {i["name"]: i["held"] for i in report["invariants"]}
    assert all(held.values()) and held["exercised_node_kills"] and held["converged"]
    assert sorted(report["nodes"]) == ["node-1", "node-2"]
    assert report["nodes"]["node-1"]["state"] == "killed"
    # the node SIGKILLed itself; the run started none and stopped none
    assert fleet.processes["node-1"].wait(timeout=10) == -signal.SIGKILL
    assert fleet.running() == ["node-2"]

    # a kill_node target must match a live node of the joined cluster
    variant = _variant(tmp_path, 'target = "node-1"', 'target = "node-9"')
    assert main(["run", variant, "--store", url, "--join", "--secret-file",
                 _secret_file(tmp_path), "--out", str(tmp_path / "out9")]) == 2
    assert ("faults[0].target: 'node-9' matches no live node of the cluster; expected a "
            "name or glob matching one of: node-2") in capsys.readouterr().err


STREAM = """
[scenario]
name = "joined"
seed = 3
clock = "real"

[stream]
partitions = 4
workers = 2
batch_size = 50
lease_ttl = "2s"
rate = 2000.0
produce_chunk = 50
source = { records = 9000, keys = 20, payload_bytes = 16 }
destination = "dir://{out}/sink"

[[faults]]
kind = "kill_node"
target = "node-1"
at = "0.5s"
restart_after = "1s"

[[faults]]
kind = "pause_node"
target = "node-2"
at = "1s"
duration = "0.5s"

[[faults]]
kind = "partition"
target = "node-1|node-2"
at = "3.5s"
duration = "0.5s"

[expect]
exactly_once = true
node_kills = 1
node_pauses = 1
node_partitions = 1
"""


def _command_lines(url: str) -> list[list[str]]:
    """The argument lists of the live processes whose command line names ``url``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes()
        except OSError:
            continue
        if url.encode() in text:
            found.append(text.decode(errors="replace").rstrip("\0").split("\0"))
    return found


def _stop_by_store(url: str) -> None:
    """SIGTERM every process whose command line names ``url`` (a node the run's kill
    started again is no child of the test's fleet)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if url.encode() in cmdline.read_bytes():
                os.kill(int(cmdline.parent.name), signal.SIGTERM)
        except (OSError, ValueError):
            continue


@pytest.mark.real_processes
@pytest.mark.parametrize("cluster", [["stream"]], indirect=True, ids=["stream-only"])
def test_a_joined_cluster_takes_every_node_fault_through_the_agents(
        tmp_path: Path, cluster: tuple[str, NodeFleet],
        capsys: pytest.CaptureFixture[str]) -> None:
    """kill_node with restart_after (the node starts its own command line again),
    pause_node (a helper sends SIGCONT) and partition, on nodes the run did not start."""
    url, fleet = cluster
    file = tmp_path / "joined.toml"
    file.write_text(STREAM)
    try:
        code = main(["run", str(file), "--store", url, "--join", "--secret-file",
                     _secret_file(tmp_path), "--out", str(tmp_path / "out"), "--json"])
        captured = capsys.readouterr()
        assert captured.out, captured.err
        report = json.loads(captured.out)
        failed = {i["name"]: i["detail"] for i in report["invariants"] if not i["held"]}
        assert code == 0 and not failed, failed
        nodes = report["nodes"]
        assert nodes["node-1"]["kills"] == 1 and nodes["node-1"]["node_restarts"] == 1
        assert nodes["node-1"]["state"] == "up"  # the new process answered its agent
        assert nodes["node-2"]["pauses"] == 1 and nodes["node-2"]["state"] == "up"
        assert fleet.processes["node-1"].wait(timeout=10) == -signal.SIGKILL
        # the restarted node-1 is a new process with the same command line, --systems too
        restarted = [argv for argv in _command_lines(url) if "node-1" in argv]
        assert len(restarted) == 1 and "--systems" in restarted[0], restarted
        assert restarted[0][restarted[0].index("--systems") + 1] == "stream"
    finally:
        _stop_by_store(url)


@pytest.mark.real_processes
@pytest.mark.parametrize("cluster", [["stream"]], indirect=True, ids=["stream-only"])
def test_a_wrong_secret_is_named_not_hung_on(
        tmp_path: Path, cluster: tuple[str, NodeFleet], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    url, _fleet = cluster
    monkeypatch.setattr(_join, "JOIN_WAIT", 2.0)
    assert main(["run", str(DEPLOY), "--store", url, "--join", "--secret-file",
                 _secret_file(tmp_path, "not-the-secret"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "none of its nodes (node-1, node-2) answered through the cluster handshake; is " \
           "the secret the same as the nodes'?" in err
    assert "not-the-secret" not in err and "Traceback" not in err


@pytest.mark.real_processes
@pytest.mark.parametrize("cluster", [["stream"]], indirect=True, ids=["stream-only"])
def test_nodes_that_do_not_host_the_runs_system_are_named_not_waited_on(
        tmp_path: Path, cluster: tuple[str, NodeFleet],
        capsys: pytest.CaptureFixture[str]) -> None:
    """A deploy run joining nodes started with --systems stream: exit 2 naming them (it
    used to wait for its deployment's entities, which no node could host, until its
    timeout and fail ``finished``)."""
    url, _fleet = cluster
    variant = _variant(tmp_path, 'timeout = "60s"', 'timeout = "6s"')
    assert main(["run", variant, "--store", url, "--join", "--secret-file",
                 _secret_file(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "node node-1, node-2 does not host system 'deploy' (started with `shardline " \
           "node --systems stream`); expected every node to host it: start them with " \
           "--systems naming deploy, or without --systems" in err
    assert "Traceback" not in err and SECRET not in err


def test_a_cluster_without_a_live_node_is_exit_2_naming_the_store(
        tmp_path: Path, postgres_url: Callable[..., str], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_join, "JOIN_WAIT", 0.5)
    monkeypatch.setenv("JOIN_SECRET", SECRET)
    url = postgres_url()
    assert main(["run", str(DEPLOY), "--store", url, "--join", "--secret-env", "JOIN_SECRET",
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--join: the cluster of postgresql://postgres:***@127.0.0.1:" in err
    assert "has no live node after 0.5 s; start nodes with `shardline node --store ...` " \
           "first" in err
    password = urlsplit(url).password
    assert password and password not in err and SECRET not in err


@pytest.mark.parametrize(("args", "old", "new", "expected"), [
    (["--nodes", "2"], "", "", "--join drives a cluster started by hand and --nodes starts "
     "one: give one of them"),
    (["--store", "sqlite:///{out}/x.db"], "", "",
     "--join: store sqlite:///"),
    (["--store", "memory://"], "", "",
     "--join: store memory://: several nodes need a shared store: postgresql://"),
    (["--listen", "nowhere"], "", "", "--listen: "),
    (["--clock", "simulated"], "", "",
     "scenario.clock: --join drives node processes, which keep the real clock; expected "
     "clock = \"real\" (the default with --join), got 'simulated'"),
    # a file's simulated clock is no obstacle: --join runs it on the real clock (so it
    # goes on to open the store, unreachable here)
    ([], 'clock = "real"', 'clock = "simulated"', "cannot connect: the server is unreachable"),
])
def test_bad_join_input_is_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], old: str,
        new: str, expected: str) -> None:
    file = _variant(tmp_path, old, new) if old else str(DEPLOY)
    store = [] if "--store" in args else ["--store", "postgresql://u:hunter2@127.0.0.1:1/db"]
    assert main(["run", file, "--join", "--secret-file", _secret_file(tmp_path),
                 "--out", str(tmp_path / "o"), *store, *args]) == 2
    err = capsys.readouterr().err
    assert expected in err and "hunter2" not in err and SECRET not in err
    assert "Traceback" not in err and err.count(".toml: ") <= 1  # the file named once


@pytest.mark.parametrize(("args", "env", "expected"), [
    (["--join"], {}, "--join needs the cluster secret: --secret-file FILE or --secret-env VAR"),
    (["--join", "--secret-env", "UNSET_VAR"], {},
     "--secret-env UNSET_VAR: the environment variable is unset or empty"),
    (["--join", "--secret-file", "/nonexistent/secret"], {},
     "--secret-file /nonexistent/secret: cannot read it"),
    (["--secret-env", SECRET_ENV], {SECRET_ENV: SECRET},
     "--secret-file, --secret-env and --listen belong to --join"),
    (["--listen", "127.0.0.1:0"], {}, "--secret-file, --secret-env and --listen belong to "
     "--join"),
])
def test_bad_join_options_are_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        args: list[str], env: dict[str, str], expected: str) -> None:
    monkeypatch.delenv("UNSET_VAR", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["run", str(DEPLOY), "--store", "postgresql://u:hunter2@127.0.0.1:1/db",
                 "--out", str(tmp_path / "o"), *args]) == 2
    err = capsys.readouterr().err
    assert expected in err and "hunter2" not in err and SECRET not in err
