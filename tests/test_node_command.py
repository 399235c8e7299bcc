"""``shardline node``: bad input is exit 2; real node processes join, answer, leave on
SIGTERM; a node with the wrong secret is refused, logged, and exits 2. Real time,
a few seconds each."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

import runtime
from runtime import Cluster, Runtime
from runtime._node_cli import hosted_systems
from runtime._node_fleet import NodeFleet, NodeStartFailed
from runtime.cli import main
from runtime.cluster._agent import NodeReport, ask_report

pytestmark = pytest.mark.real_processes

SECRET = "node-command-secret"


@pytest.mark.parametrize(("argv", "expected"), [
    (["--store", "sqlite:///x.db", "--secret-env", "HOME"],
     "--store sqlite:///x.db: several nodes need a shared store: postgresql://"),
    (["--store", "memory://", "--secret-env", "HOME"], "several nodes need a shared store"),
    (["--store", "postgresql://u:hunter2@h/db", "--listen", "nowhere", "--secret-env", "HOME"],
     "--listen: Cluster listen address 'nowhere' is not host:port"),
    (["--store", "postgresql://u:hunter2@h/db", "--secret-env", "SHARDLINE_UNSET_VAR"],
     "--secret-env SHARDLINE_UNSET_VAR: the environment variable is unset or empty"),
    (["--store", "postgresql://u:hunter2@h/db", "--secret-file", "/nonexistent/secret"],
     "--secret-file /nonexistent/secret: cannot read it"),
    (["--store", "postgresql://u:hunter2@h/db", "--secret-env", "HOME", "--lease-ttl", "2x"],
     "--lease-ttl:"),
    (["--store", "postgresql://u:hunter2@h/db", "--secret-env", "HOME", "--systems",
      "stream,streams"],
     "--systems: expected names from deploy, log, queue, stream separated by commas, "
     "got 'streams'"),
    (["--store", "postgresql://u:hunter2@h/db", "--secret-env", "HOME", "--systems", ""],
     "--systems: expected names from deploy, log, queue, stream separated by commas, "
     "got ''"),
    (["--store", "postgresql://u:hunter2@h/db", "--secret-env", "HOME", "--systems",
      "stream,,queue"], "got ''"),
])
def test_bad_node_input_is_exit_2_naming_the_option(
        argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["node", *argv]) == 2
    err = capsys.readouterr().err
    assert expected in err
    assert "hunter2" not in err and "Traceback" not in err


def test_systems_are_names_around_commas_each_once() -> None:
    assert hosted_systems(" stream , queue,stream") == ("stream", "queue")
    assert hosted_systems(None) == ("deploy", "log", "queue", "stream")


def test_a_node_without_a_secret_option_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["node", "--store", "postgresql://u@h/db"])
    assert stop.value.code == 2
    assert "--secret-file --secret-env is required" in capsys.readouterr().err


def test_nodes_join_answer_and_leave_cleanly_on_sigterm(
        postgres_url: Callable[..., str], tmp_path: Path) -> None:
    url = postgres_url()
    fleet = NodeFleet(url, SECRET, tmp_path, lease_ttl=1.0)

    async def driver() -> tuple[list[str], list[NodeReport], list[str]]:
        async with Runtime(store=url, cluster=Cluster(secret=SECRET, name="driver",
                                                      lease_ttl=1.0)) as rt:
            await rt.wait_until(lambda: len(rt.nodes()) == 3, deadline=rt.now() + 10)
            joined = rt.nodes()
            reports = [await ask_report(rt, name, 5.0) for name in ("node-1", "node-2")]
            fleet.processes["node-1"].terminate()
            # a clean leave is seen at once, not after the lease TTL
            await rt.wait_until(lambda: "node-1" not in rt.nodes(), deadline=rt.now() + 0.9)
            return joined, reports, rt.nodes()

    fleet.start(["node-1", "node-2"])
    try:
        joined, reports, after = runtime.run(driver)
    finally:
        codes = fleet.stop()
    assert joined == ["driver", "node-1", "node-2"]
    assert [r.node for r in reports] == ["node-1", "node-2"]
    assert all(r.actors >= 1 and r.messages >= 1 for r in reports)
    assert all(0 < r.cpu_s < 60 for r in reports)  # the node process's CPU seconds
    assert after == ["driver", "node-2"]
    assert codes == {"node-1": 0, "node-2": 0}
    events = [json.loads(line)["event"]
              for line in (tmp_path / "node-1.log").read_text().splitlines()]
    assert "node.stopping" in events and "node.stopped" in events


def test_a_node_with_the_wrong_secret_is_refused_logged_and_exits_2(
        postgres_url: Callable[..., str], tmp_path: Path) -> None:
    url = postgres_url()
    # one system each: the refusal does not depend on what a node hosts, and a node
    # without deploy's scipy starts in a third of the time
    good = NodeFleet(url, SECRET, tmp_path / "good", lease_ttl=1.0, systems=["stream"])
    bad = NodeFleet(url, "not-the-secret", tmp_path / "bad", lease_ttl=1.0, systems=["stream"])
    good.start(["node-1"])
    try:
        with pytest.raises(NodeStartFailed) as failed:
            bad.start(["node-2"])
    finally:
        bad.stop()
        good.stop()
    assert "node node-2 could not join (exit 2)" in str(failed.value)
    assert "refused by every peer (node-1)" in str(failed.value)
    assert "not-the-secret" not in (tmp_path / "bad" / "node-2.log").read_text()
    refusals = [json.loads(line) for line in (tmp_path / "good" / "node-1.log").read_text()
                .splitlines() if line.startswith("{")]
    assert any(e["event"] == "connection.refused" for e in refusals)
