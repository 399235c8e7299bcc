"""Actor faults of a scenario reach actors on cluster nodes (``runtime.cluster._remote_faults``).

Before, a run across nodes validated ``crash`` on ``queue.server-*`` against the
one-process topology and then struck nothing: the servers were entities on the
nodes and the driver's injector only looked at its own actors (0 faults injected,
the run "passed").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from pathlib import Path

import pytest

import runtime
from runtime import Actor, Fault, Message, Runtime
from runtime.cli import main as shardline
from runtime.cluster import Cluster, SimulatedNetwork
from tests.cluster_helpers import shared_memory_store

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


def crashing(name: str, target: str, trigger: str, records: tuple[str, str],
             tmp_path: Path) -> Path:
    """A shipped node scenario with ``records`` replaced and its ``[[faults]]`` (node
    kills) replaced by a crash of ``target`` on ``trigger``."""
    text = (SCENARIOS / name).read_text().replace(*records)
    start, end = text.index("[[faults]]"), text.index("[expect]")
    expect = re.sub(r"\n(node_kills|min_server_recoveries) = \d+", "", text[end:])
    faults = f'[[faults]]\nkind = "crash"\ntarget = "{target}"\n{trigger}\n\n'
    text = text[:start] + faults + expect
    path = tmp_path / name
    path.write_text(text)
    return path


def run(path: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    code = shardline(["run", str(path), "--out", str(out), "--json", "--fresh"])
    report: dict[str, object] = json.loads(capsys.readouterr().out)
    assert code == 0, report["invariants"]
    return report


def test_crashes_of_queue_servers_on_nodes_strike_and_a_seed_replays_them(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = crashing("queue_node_kill.toml", "queue.server-*", 'start = "2s"\nevery = "1s"',
                    ("records = 6000", "records = 3000"), tmp_path)
    first = run(path, tmp_path / "a", capsys)
    metrics = first["metrics"]
    assert isinstance(metrics, dict)
    # each crash stops a server entity on its node; it is activated again from its journal
    assert metrics["faults_injected"] >= 5
    assert metrics["server_recoveries"] >= 5
    assert metrics["dead_lettered"] == 0
    again = run(path, tmp_path / "b", capsys)
    assert again["trace_digest"] == first["trace_digest"]


def test_a_crash_of_a_log_server_on_a_node_is_struck_by_its_one_process_name(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = crashing("log_node_kill.toml", "logserver.events",
                    'start = "1s"\nevery = "1s"\ncount = 3',
                    ("records = 18000", "records = 6000"), tmp_path)
    metrics = run(path, tmp_path / "out", capsys)["metrics"]
    assert isinstance(metrics, dict)
    assert metrics["faults_injected"] == 3
    assert metrics["unavailable"] >= 1  # requests that met the crash were answered so


def test_probability_faults_are_installed_on_every_node(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = crashing("queue_node_kill.toml", "queue.transform-*", "probability = 0.02",
                    ("records = 6000", "records = 3000"), tmp_path)
    report = run(path, tmp_path / "out", capsys)
    nodes = report["nodes"]
    assert isinstance(nodes, dict)
    # the clients of a tier run on every node; each node's injector crashed its own
    assert all(node["restarts"] > 0 for node in nodes.values()), nodes
    # and each node reports the faults its injector struck
    assert all(node["faults"] >= node["restarts"] for node in nodes.values()), nodes


class _Ping(Message, frozen=True):
    pass


class _Quiet(Actor[_Ping]):
    async def receive(self, msg: _Ping) -> object:
        return None


class _Aliased(_Quiet):
    @property
    def fault_names(self) -> tuple[str, ...]:
        return ("logserver.events",)


def test_on_a_node_a_target_strikes_by_entity_key_fault_names_and_without_the_node_suffix(
) -> None:
    async def main() -> None:
        cluster = Cluster(secret="s", name="node-2", network=SimulatedNetwork())
        async with Runtime(store=await shared_memory_store(), cluster=cluster) as rt:
            for name in ("QueueServerEntity/queue.server-1",
                         "DeploymentHostEntity/d-1/deploy.host-3",
                         "stream.worker-0.node-2", "stream.worker-0.node-3"):
                await rt.spawn(_Quiet, name=name)
            await rt.spawn(_Aliased, name="LogServerEntity/events")

            def struck(target: str) -> list[str]:
                return rt.faults.candidates(Fault("crash", target, at=1.0))

            assert struck("queue.server-*") == ["QueueServerEntity/queue.server-1"]
            assert struck("deploy.host-3") == ["DeploymentHostEntity/d-1/deploy.host-3"]
            assert struck("stream.worker-0") == ["stream.worker-0.node-2"]  # not node-3's
            assert struck("logserver.events") == ["LogServerEntity/events"]
            assert struck("queue.final") == []
            assert rt.faults.arm("QueueServerEntity/queue.server-1",
                                 Fault("crash", "queue.server-*", at=1.0), entry=7)
            # the same plan entry again (it came over the wire: equal, not identical)
            assert not rt.faults.arm("QueueServerEntity/queue.server-1",
                                     Fault("crash", "queue.server-*", at=1.0), entry=7)
            # another entry equal by value is another fault
            assert rt.faults.arm("QueueServerEntity/queue.server-1",
                                 Fault("crash", "queue.server-*", at=1.0), entry=8)

    runtime.run(main, simulated=True)


def test_without_a_cluster_only_the_name_itself_matches() -> None:
    async def main() -> None:
        async with Runtime() as rt:
            await rt.spawn(_Quiet, name="Kind/queue.server-1")
            assert rt.faults.candidates(Fault("crash", "queue.server-*", at=1.0)) == []
            assert rt.faults.candidates(Fault("crash", "Kind/*", at=1.0)) == [
                "Kind/queue.server-1"]

    runtime.run(main, simulated=True)


class _SlowNodes:
    """Nodes that take 2 s to say they hold no matching actor (a silent node's ask
    waits out its timeout)."""

    async def candidates(self, fault: Fault) -> list[tuple[str, str]]:
        await asyncio.sleep(2)
        return []

    async def strike(self, node: str, name: str, fault: Fault) -> bool:
        raise AssertionError("no node offered a candidate")


def test_a_trigger_absorbed_while_others_waited_for_it_does_not_end_the_schedule() -> None:
    """``every`` with ``count``: a trigger still asking the nodes counts against the
    budget, so later triggers pass meanwhile; if it then strikes nothing, it spent
    nothing, and the triggers go on (the one actor appears after the first trigger)."""
    async def main() -> int:
        async with Runtime(faults=[Fault("crash", "w", every=0.5, count=1)]) as rt:
            rt.faults.remote = _SlowNodes()
            await asyncio.sleep(0.7)  # the first trigger (0.5 s) found no actor
            ref = await rt.spawn(_Quiet, name="w")
            for _ in range(10):
                await asyncio.sleep(1)
                with contextlib.suppress(runtime.InjectedFault):
                    await ref.ask(_Ping())
            return ref.statistics().crashed

    assert runtime.run(main, simulated=True) == 1
