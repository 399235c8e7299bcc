"""The strict queue across nodes: servers are entities, clients run on every node.

Simulated: random node kills by seed (every queue invariant), a server that moves
to another node keeps its dedup ids and its visibility timeouts, a repeated request
is answered once. Real: three ``shardline node`` processes on PostgreSQL, one
SIGKILLed mid-run (a few seconds). The scenario files themselves
(``queue_node_kill.toml``, ``queue_node_partition.toml``) run in
``test_queue_scenarios.py`` with the others.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _helpers import sim
from structlog.testing import capture_logs

from actors.queue import GeneratedSource, QueueConfig, TierConfig
from actors.queue._entity import QueueServerEntity, ServerRequest
from actors.queue._history import read_history
from actors.queue._journal import BatchesReceived
from actors.queue._ledger import Ledger
from actors.queue._messages import (
    AckResult,
    Delivery,
    EnqueueResult,
    QueuedMessage,
    Receive,
)
from actors.queue._nodes import NodeServers, announce, server_activations
from actors.queue._pipeline import queue_cluster
from actors.queue._recipe import NodeRecipe
from runtime import Fault, Runtime
from runtime.cli import main
from runtime.scenario._nodes import SimulatedNodes

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ("finished", "strict_order", "exactly_once_contribution", "result_matches_oracle",
           "dead_letters")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    code = main(["run", *argv, "--json"])
    captured = capsys.readouterr()
    assert captured.out, captured.err
    report: dict[str, Any] = json.loads(captured.out)
    failed = {i["name"]: i["detail"] for i in report["invariants"] if not i["held"]}
    assert code == 0 and not failed, failed
    assert {i["name"] for i in report["invariants"]} >= set(CHECKED)
    return report


RANDOM_KILLS = """[[faults]]
kind = "kill_node"
target = "node-*"
probability = 0.06
count = 3
restart_after = "2s"

"""


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_node_kills_by_seed_keep_every_queue_invariant(
        seed: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Any node may die at any second (a draw per node per second), up to three times;
    the servers it hosted move, its clients die with it."""
    text = (ROOT / "scenarios" / "queue_node_kill.toml").read_text()
    text = text[:text.index("[[faults]]")] + RANDOM_KILLS + "[expect]\nmax_dead_letters = 0\n"
    text = text.replace("records = 6000", "records = 3000")
    file = tmp_path / "random.toml"
    file.write_text(text)
    report = _run(capsys, str(file), "--seed", str(seed), "--out", str(tmp_path / "out"))
    kills = sum(n["kills"] for n in report["nodes"].values())
    assert 1 <= kills <= 3
    assert report["metrics"]["originals"] == 3000
    moved = [s for s, on in report["server_nodes"].items() if len(on) > 1]
    assert moved, report["server_nodes"]  # a killed node hosted a server, which moved
    if seed == 1:  # a seed replays the run: the same kills, moves and trace
        again = _run(capsys, str(file), "--seed", "1", "--out", str(tmp_path / "again"))
        assert again["trace_digest"] == report["trace_digest"]
        assert again["nodes"] == report["nodes"]
        assert again["server_nodes"] == report["server_nodes"]


CONFIG = QueueConfig(tiers=[TierConfig("work", "map")], name="moving", servers=1,
                     visibility_timeout=5.0, dedup_window=60.0, ask_timeout=10.0,
                     source=GeneratedSource(records=10, keys=2))
RECIPE = NodeRecipe(CONFIG, seed=0, run=1, running=False)  # no clients on the nodes


def _message(ident: str) -> QueuedMessage:
    return QueuedMessage(ident, "k", ident.encode(), Ledger())


def test_a_server_that_moves_keeps_dedup_ids_and_visibility_timeouts() -> None:
    """The server's node dies with m1 out: on the survivor a repeat of m1's enqueue is
    dropped, m1 (still out) comes back only after its visibility timeout, its old
    receipt is refused and the new one settles it, and then m2 follows in order."""

    async def scenario() -> dict[str, Any]:
        nodes = SimulatedNodes(2)
        async with Runtime(store="memory://", cluster=nodes.driver_cluster()) as rt:
            nodes.driver = rt
            await nodes.start(rt)
            await announce(rt.store, RECIPE)
            cluster = queue_cluster(rt, CONFIG, cluster_type=NodeServers)
            await cluster.start()
            out: dict[str, Any] = {"first": await cluster.enqueue(
                "work", [_message("m1"), _message("m2")])}
            [delivered] = await cluster.receive("work")
            delivered_at = rt.now()
            host = (await server_activations(rt.store, RECIPE))["server-0"][-1]
            nodes.kill(host, Fault(kind="kill_node", at=0.0))
            out["duplicate"] = await cluster.enqueue("work", [_message("m1")])
            early: list[Delivery] = []
            while rt.now() < delivered_at + 4.8:
                early += await cluster.receive("work")
                await rt.sleep(0.2)
            again: list[Delivery] = []
            while not again:
                again = await cluster.receive("work")
                await rt.sleep(0.05)
            out["after"] = rt.now() - delivered_at
            out["early"], out["again"] = early, again
            out["stale"] = await cluster.ack([delivered.receipt])
            out["fresh"] = await cluster.ack([again[0].receipt])
            out["next"] = await cluster.receive("work")
            out["delivered"] = delivered
            out["host"] = host
            out["activations"] = (await server_activations(rt.store, RECIPE))["server-0"]
            await nodes.stop()
        return out

    out = sim(scenario, seed=7)
    assert out["first"] == EnqueueResult(2, 0)
    assert out["duplicate"] == EnqueueResult(0, 1)  # the dedup id moved with the server
    assert out["early"] == []  # m1 out, m2 behind it: nothing of key k before the timeout
    [again] = out["again"]
    assert again.message.id == "m1" and again.receipt.attempt == 2
    assert out["after"] >= 5.0
    assert out["stale"] == AckResult(0, [out["delivered"].receipt])
    assert out["fresh"] == AckResult(1, [])
    assert [d.message.id for d in out["next"]] == ["m2"]
    assert out["activations"][0] == out["host"] and len(set(out["activations"])) == 2


def test_a_repeated_request_is_answered_once() -> None:
    """A request the sender re-sent (same id) gets the first answer again, no second
    receive; a new request finds the key's batch out."""

    async def scenario() -> tuple[object, object, object, int]:
        nodes = SimulatedNodes(2)
        async with Runtime(store="memory://", cluster=nodes.driver_cluster()) as rt:
            nodes.driver = rt
            await nodes.start(rt)
            await announce(rt.store, RECIPE)
            cluster = queue_cluster(rt, CONFIG, cluster_type=NodeServers)
            await cluster.start()
            await cluster.enqueue("work", [_message("m1"), _message("m2")])
            server: Any = rt.entity(QueueServerEntity, "moving.server-0")
            receive = Receive("work", 10, 1, "client")
            first = await server.ask(ServerRequest("test:1", receive))
            repeated = await server.ask(ServerRequest("test:1", receive))
            other = await server.ask(ServerRequest("test:2", receive))
            history = await read_history(rt.store, "moving", 1)
            receives = sum(isinstance(e, BatchesReceived) and bool(e.keys)
                           for e in history.events[0])
            await nodes.stop()
        return first, repeated, other, receives

    first, repeated, other, receives = sim(scenario, seed=3)
    assert first == repeated and first  # the same batch, the same receipt
    assert other == []
    assert receives == 1


def test_a_node_that_cannot_build_a_pipeline_says_so_once_and_keeps_serving() -> None:
    """A tier function a node cannot import: logged once per node and run, not retried
    every scan, and the node's clients host (and the node) carry on."""
    broken = QueueConfig(tiers=[TierConfig("work", "map", fn="no_such_module:work")],
                         name="broken", servers=1, source=CONFIG.source)

    async def scenario() -> tuple[list[str], list[list[str]]]:
        nodes = SimulatedNodes(2)
        with capture_logs() as logs:
            async with Runtime(store="memory://", cluster=nodes.driver_cluster()) as rt:
                nodes.driver = rt
                await nodes.start(rt)
                await announce(rt.store, NodeRecipe(broken, seed=0, run=1))
                await rt.sleep(3.0)
                actors = [sorted(nodes.runtimes[n].actors()) for n in nodes.names]
                await nodes.stop()
        return [e["node"] if "node" in e else e.get("actor", "") for e in logs
                if e["event"] == "queue.node_clients_failed"], actors

    failed, actors = sim(scenario, seed=5)
    assert len(failed) == 2  # once on each node
    assert all("queue.node-clients" in names and "broken" not in names for names in actors)


@pytest.mark.real_processes
def test_the_queue_across_node_processes_survives_a_sigkill(
        tmp_path: Path, postgres_url: Callable[..., str],
        capsys: pytest.CaptureFixture[str]) -> None:
    report = _run(capsys, str(ROOT / "tests" / "queue_real_nodes.toml"), "--nodes", "3",
                  "--store", postgres_url(), "--out", str(tmp_path / "out"))
    held = {i["name"]: i["held"] for i in report["invariants"]}
    assert held["exercised_node_kills"]
    nodes = report["nodes"]
    assert nodes["node-2"]["state"] == "killed" and nodes["node-2"]["kills"] == 1
    assert report["metrics"]["originals"] == 2000
    # every server ran somewhere, and node-2's moved to a survivor
    on = report["server_nodes"]
    assert all(on.values())
    assert all(hosts[-1] != "node-2" for hosts in on.values())
    # the run's nodes host the queue alone (``--systems queue``): no other system's
    # node-local actor started on them
    started = {json.loads(line).get("actor") for name in ("node-1", "node-3") for line in
               (tmp_path / "out" / "nodes" / f"{name}.log").read_text().splitlines()
               if line.startswith("{") and '"actor.started"' in line}
    assert "queue.node-clients" in started and "stream.node-host" not in started
