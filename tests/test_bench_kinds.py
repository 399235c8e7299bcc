"""Where and how often a sweep point's fault fires (``runtime.bench._kinds``)."""

from __future__ import annotations

import pytest

from runtime.bench._kinds import fault_entry, lasting, planned_count
from runtime.scenario import load_system


@pytest.mark.parametrize(("system", "kind", "target"), [
    ("stream", "crash", "stream.worker-*"),
    ("stream", "lease_expiry", "stream.partition-*"),
    ("queue", "pause", "queue.transform-*"),
    ("log", "crash", "reader.*"),
    ("deploy", "metrics_outage", "deploy.metrics"),
    ("stream", "store_error", "store.*"),
])
def test_a_kind_lands_where_the_system_says(system: str, kind: str, target: str) -> None:
    entry = fault_entry(kind, load_system(system).bench_fault_targets, 2.0, 1.0, 2.0, [])
    assert entry["target"] == target


def test_the_rate_sets_every_start_and_count() -> None:
    entry = fault_entry("pause", {"actors": "a.*"}, 4.0, 1.0, 2.0, [])
    assert entry == {"kind": "pause", "target": "a.*", "duration": "300ms",
                     "every": "250.000ms", "start": "750.000ms", "count": 8}
    assert lasting("pause", entry) == 0.3 and lasting("crash", entry) == 0.0
    assert planned_count(0.1, 2.0) == 1  # at least one fault per point


def test_the_users_own_entry_of_the_kind_keeps_its_target_and_duration() -> None:
    mine = [{"kind": "pause", "target": "mine-*", "duration": "2s", "at": "1s"}]
    entry = fault_entry("pause", {"actors": "a.*"}, 1.0, 3.0, 2.0, mine)
    assert entry["target"] == "mine-*" and entry["duration"] == "2s" and "at" not in entry
    assert entry["every"] == "1000.000ms" and entry["count"] == 2


@pytest.mark.parametrize("system", ["stream", "queue", "log", "deploy"])
def test_every_kind_a_system_knows_lands_on_something_of_its_bench_scenario(
        system: str) -> None:
    """The sweep's default target of each kind passes the same fault-target validation
    as ``shardline validate`` against ``scenarios/bench_<system>.toml``."""
    import tomllib
    from pathlib import Path

    from runtime._faults import ACTOR_FAULT_KINDS
    from runtime.scenario import parse_scenario

    path = Path(__file__).parents[1] / "scenarios" / f"bench_{system}.toml"
    raw = tomllib.loads(path.read_text())
    known = load_system(system)
    for kind in [*ACTOR_FAULT_KINDS, "store_error", *known.fault_kinds]:
        entry = fault_entry(kind, known.bench_fault_targets, 2.0, 1.0, 2.0, [])
        loaded = parse_scenario({**raw, "faults": [entry]}, str(path))
        assert [f.kind for f in loaded.faults] == [kind]
