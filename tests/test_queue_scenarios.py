"""Every ``scenarios/queue_*.toml`` passes through ``shardline run`` and exercises its fault.

Each file runs in process through the command line entry point, as a user
would run it. Beyond the invariants and the file's own ``[expect]`` floors,
the test reads the metrics itself: the fault the file is about must show
in them (a crash scenario that never crashed proves nothing). The JSON
report must carry the final result, which is compared with sums computed
here over the originals.
"""

from __future__ import annotations

import fnmatch
import json
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from actors.queue import GeneratedSource
from actors.queue._source import generated_items
from runtime.cli import main as shardline
from tests.queue_helpers import CHECKED, assert_all_held, direct_sums

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
Report = dict[str, Any]


def run(path: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, Report]:
    code = shardline(["run", str(path), "--out", str(out), "--json"])
    report: Report = json.loads(capsys.readouterr().out)
    return code, report


def originals(path: Path, seed: int) -> list[tuple[str, bytes]]:
    """The scenario's originals (built-in source), regenerated from its seed."""
    source = tomllib.loads(path.read_text())["queue"]["source"]
    return list(generated_items(GeneratedSource(**source), seed))


def no_faults(r: Report) -> None:
    m = r["metrics"]
    assert m["faults_injected"] == 0 and m["restarts"] == 0
    assert m["redeliveries"] == 0 and m["duplicates_dropped"] == 0
    assert m["dead_lettered"] == 0 and r["dead_letters"] == []
    # each tier maps to coarser keys: the range of strict-order keys narrows
    assert [t["distinct_keys_in"] for t in r["tiers"]] == [500, 100, 10]
    # full lineage: each sampled original names its final aggregate and the way there
    assert r["lineage"] and all(s["verified"] for s in r["lineage"])
    for sample in r["lineage"]:
        made_by = [step["made_by"] for step in sample["through"]]
        assert made_by == ["transform", "summarize", "aggregate"]
        assert sample["through"][-1]["queue"] == "final"
        assert sample["through"][-1]["id"] == sample["final_aggregate"]


def client_crash(r: Report) -> None:
    m = r["metrics"]
    assert m["restarts"] >= 20 and m["faults_injected"] >= 20
    # crashed clients' messages came back after the visibility timeout ...
    assert m["visibility_expired"] >= 10 and m["redeliveries"] >= 10
    # ... and the outputs they had already enqueued were dropped as duplicates
    assert m["duplicates_dropped"] >= 1
    assert m["dead_lettered"] == 0


def client_pause(r: Report) -> None:
    m = r["metrics"]
    assert m["late_acks_refused"] >= 1 and m["acks_refused"] >= m["late_acks_refused"]
    assert m["duplicates_dropped"] >= 1 and m["visibility_expired"] >= 1
    assert m["restarts"] == 0


def hot_key(r: Report) -> None:
    m = r["metrics"]
    checks = {i["name"]: i for i in r["invariants"]}
    assert checks["hot_key_isolation"]["held"]
    assert m["other_keys_latency_p99_s"] <= 0.25
    # one batch of the hot key out at a time: batched per-key delivery keeps it
    # within the bound as well
    assert m["hot_key_latency_p99_s"] <= 0.25
    transform = r["tiers"][0]
    assert transform["name"] == "transform" and transform["messages_in"] == 6000


def poison(r: Report) -> None:
    m = r["metrics"]
    dead = r["dead_letters"]
    assert 10 <= m["dead_lettered"] == len(dead) <= 40
    for letter in dead:
        assert letter["queue"] == "transform" and letter["receives"] == 5
        assert letter["key"].startswith("key-00001") and letter["counted_out"] is True
        assert "PoisonMessage" in letter["reason"]
    assert m["processing_errors"] >= 5 * len(dead)
    ledger = r["ledger"]
    out = ledger["dead_letters_counted_out"]["count"]
    assert out == len(dead)
    assert ledger["final"]["count"] + out == ledger["source"]["count"] == 6000
    checks = {i["name"]: i for i in r["invariants"]}
    assert f"{len(dead)} counted out" in checks["dead_letters"]["detail"]


def server_crash(r: Report) -> None:
    m = r["metrics"]
    assert m["server_recoveries"] >= 10 and m["restarts"] >= 10
    assert m["request_retries"] >= 1  # clients retried the calls the crashes failed


def store_errors(r: Report) -> None:
    m = r["metrics"]
    assert m["faults_injected"] >= 10
    assert m["server_recoveries"] >= 3 and m["request_retries"] >= 10


def node_kill(r: Report) -> None:
    m = r["metrics"]
    nodes = r["nodes"]
    assert [n["kills"] for n in nodes.values()] == [2, 2, 2]
    assert all(n["node_restarts"] == 2 for n in nodes.values())
    # the killed nodes' servers moved: activated again, some on another node
    assert m["server_recoveries"] >= 3
    assert any(len(set(on)) > 1 for on in r["server_nodes"].values())
    # batches the killed nodes' clients held came back after their visibility timeout
    assert m["visibility_expired"] >= 1 and m["redeliveries"] >= 1


def node_partition(r: Report) -> None:
    m = r["metrics"]
    # nothing moved (the store stayed reachable, so every lease was kept) ...
    assert all(len(on) == 1 for on in r["server_nodes"].values())
    assert all(n["kills"] == 0 and n["state"] == "up" for n in r["nodes"].values())
    # ... but batches held across the cut timed out and went out again
    assert m["visibility_expired"] >= 1 and m["redeliveries"] >= 1


EXERCISED: dict[str, Callable[[Report], None]] = {
    "queue_quickstart.toml": no_faults,
    "queue_client_crash.toml": client_crash,
    "queue_client_pause.toml": client_pause,
    "queue_hot_key.toml": hot_key,
    "queue_node_kill.toml": node_kill,
    "queue_node_partition.toml": node_partition,
    "queue_poison.toml": poison,
    "queue_server_crash.toml": server_crash,
    "queue_store_errors.toml": store_errors,
}


@pytest.mark.parametrize("name", sorted(EXERCISED))
def test_scenario_passes_and_exercises_its_fault(name: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = SCENARIOS / name
    code, report = run(path, tmp_path, capsys)
    assert code == 0, report["invariants"]
    assert report["system"] == "queue"
    assert_all_held(report, CHECKED)
    # the [expect] floors of the file were checked on this (fresh) run
    floors = {k for k, v in tomllib.loads(path.read_text()).get("expect", {}).items()
              if k.startswith("min_") and v}
    exercised = {i["name"] for i in report["invariants"] if i["name"].startswith("exercised_")}
    assert {f"exercised_{k.removeprefix('min_')}" for k in floors} <= exercised
    EXERCISED[name](report)
    # the final result is in the report and equals the sums over the originals
    # that were not dead-lettered, computed here independently
    items = originals(path, report["seed"])
    poisoned = poison_of(path, items)
    assert len(poisoned) == len(report["dead_letters"])
    assert sorted(k for k, _ in poisoned) == sorted(d["key"] for d in report["dead_letters"])
    assert report["result"] == direct_sums(items, minus=poisoned)
    ledger = report["ledger"]
    assert ledger["source"]["count"] == len(items)
    assert ledger["final"]["count"] == len(items) - len(poisoned)


def poison_of(path: Path, items: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """The originals the file's ``poison`` option matches (none without it)."""
    spec = tomllib.loads(path.read_text())["queue"].get("poison")
    if spec is None:
        return []
    return [(k, b) for k, b in items if fnmatch.fnmatchcase(k, spec.get("key", "*"))
            and fnmatch.fnmatchcase(b.decode(), spec.get("body", "*"))]


def test_every_queue_scenario_file_is_covered() -> None:
    assert {p.name for p in SCENARIOS.glob("queue_*.toml")} == set(EXERCISED)
