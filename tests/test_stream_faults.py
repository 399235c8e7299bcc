"""Every stream invariant under every fault kind, on the memory and SQLite stores.

Each case runs a small simulated stream through the public scenario path
(``parse_scenario`` + ``run_scenario``) with one kind of fault, and checks
that ``exactly_once``, ``order`` and ``no_stale_commit`` are reported and
held, and that the fault really struck (a metric that only moves when it
does), so a case cannot pass because its fault missed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from actors.stream import Batch
from tests.stream_helpers import (
    BASE_STREAM,
    assert_all_held,
    assert_each_once,
    numbers,
    quiet_logs,
    read_dir_sink,
    run_doc,
    scenario_doc,
    source_items,
    user,
)

Metrics = dict[str, float]


@pytest.fixture(autouse=True)
def _quiet() -> None:
    quiet_logs()


@pytest.fixture(params=["memory", "sqlite"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The one place the backend is chosen: every test here runs on both."""
    if request.param == "memory":
        return "memory://"
    return f"sqlite:///{tmp_path / 'state.db'}"


def _crash(target: str, every: str) -> dict[str, Any]:
    return {"kind": "crash", "target": target, "every": every}


def _msg(kind: str, target: str, probability: float, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "target": target, "probability": probability, **extra}


# name -> (faults, stream overrides, evidence the fault struck)
CASES: dict[str, tuple[list[dict[str, Any]], dict[str, Any], Callable[[Metrics], bool]]] = {
    "crash-workers": (
        [_crash("stream.worker-*", "60ms")], {"batch_cost": "20ms"},
        lambda m: m["restarts"] >= 10 and m["redelivered_batches"] >= 1),
    "crash-partitions": (
        [_crash("stream.partition-*", "150ms")], {},
        lambda m: m["restarts"] >= 5),
    "crash-producer": (
        [_crash("stream.producer", "250ms")], {"produce_chunk": 50},
        lambda m: m["restarts"] >= 3),
    "crash-coordinator": (
        [_crash("stream.coordinator", "200ms")], {},
        lambda m: m["restarts"] >= 3),
    "drop-to-workers": (  # lost Assign: the lease lapses unused and is granted again
        [_msg("drop", "stream.worker-*", 0.5)], {"lease_ttl": "500ms"},
        lambda m: m["faults_injected"] >= 1 and m["lease_moves"] >= 1),
    "drop-to-partitions": (  # lost Append/ReadCheckpoint/RecordPending/CommitBatch
        [_msg("drop", "stream.partition-*", 0.05)], {},
        lambda m: m["faults_injected"] >= 5 and m["restarts"] >= 5),
    "duplicate-everywhere": (
        [_msg("duplicate", "stream.*", 0.2)], {},
        lambda m: m["faults_injected"] >= 20),
    "delay-everywhere": (  # late past ask_timeout: the asker crashes and replays
        [_msg("delay", "stream.*", 0.1, delay="500ms")], {},
        lambda m: m["faults_injected"] >= 10 and m["restarts"] >= 1),
    "store-error": (
        [_msg("store_error", "store.*", 0.03)], {},
        lambda m: m["faults_injected"] >= 5 and m["restarts"] >= 5),
    "destination-error": (
        [_msg("destination_error", "*", 0.3)], {"destination": "sqlite:///{out}/sink.db"},
        lambda m: m["destination_failures"] >= 10 and m["redelivered_batches"] >= 10),
    "lease-expiry": (
        [{"kind": "lease_expiry", "target": "*", "every": "150ms"}], {},
        lambda m: m["faults_injected"] >= 5 and m["lease_moves"] >= 1
        and m["stale_fence_refusals"] >= 1),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_invariants_hold_under_each_fault_kind(case: str, store_url: str, tmp_path: Path) -> None:
    faults, overrides, struck = CASES[case]
    report = run_doc(scenario_doc(store_url, faults=faults, **overrides), tmp_path / "out")
    assert_all_held(report)
    metrics = numbers(report)
    assert metrics["records_committed"] == BASE_STREAM["source"]["records"]
    assert struck(metrics), (case, metrics)


def test_paused_worker_loses_its_lease_and_its_late_commit_is_refused(
    store_url: str, tmp_path: Path
) -> None:
    """Lease takeover: worker-0 is paused mid-batch for 3 s with a 1 s lease. Another
    worker replays its pending batch under a new token; the late commit is refused.
    (The stream runs past the pause, so the paused worker comes back to commit.)"""
    user.reset()
    src = {**BASE_STREAM["source"], "records": 10_000}
    doc = scenario_doc(
        store_url, seed=3, faults=[{"kind": "pause", "target": "stream.worker-0", "at": "1s",
                                    "duration": "3s"}],
        batch_cost="50ms", destination="callable:tests.stream_helpers.user:deliver",
        source=src, expect={"min_late_commits_refused": 1, "min_redelivered_batches": 1})
    report = run_doc(doc, tmp_path / "out")
    found = assert_all_held(report)
    assert found["exercised_late_commits_refused"].held
    assert numbers(report)["lease_moves"] >= 1
    # The pending batch reached the destination twice (replay, then the paused
    # worker's late delivery) under one id with identical records; nothing else repeats.
    counts: dict[str, int] = {}
    for batch in user.CALLS:
        counts[batch.batch_id] = counts.get(batch.batch_id, 0) + 1
    assert max(counts.values()) >= 2
    assert_each_once(user.unique_batches(user.CALLS),
                     source_items(src["records"], src["keys"], src["payload_bytes"], seed=3))


def test_every_fault_kind_at_once(store_url: str, tmp_path: Path) -> None:
    """All kinds together, and the sink itself (not only the report) holds each record once."""
    faults = [
        _crash("stream.worker-*", "200ms"),
        _crash("stream.partition-*", "400ms"),
        _crash("stream.producer", "500ms"),
        {"kind": "pause", "target": "stream.worker-*", "at": "700ms", "duration": "2s"},
        _msg("drop", "stream.*", 0.01),
        _msg("duplicate", "stream.*", 0.05),
        _msg("delay", "stream.*", 0.02, delay="400ms"),
        _msg("store_error", "store.*", 0.01),
        _msg("destination_error", "*", 0.1),
        {"kind": "lease_expiry", "target": "*", "every": "600ms"},
    ]
    report = run_doc(scenario_doc(store_url, faults=faults, seed=9), tmp_path / "out")
    assert_all_held(report)
    assert numbers(report)["faults_injected"] >= 30
    src = BASE_STREAM["source"]
    assert_each_once(read_dir_sink(tmp_path / "out" / "sink"),
                     source_items(src["records"], src["keys"], src["payload_bytes"], seed=9))


def test_sqlite_destination_holds_each_record_once_after_crashes(tmp_path: Path) -> None:
    """The SQLite destination (keyed by batch id) under worker crashes, read back directly."""
    doc = scenario_doc(f"sqlite:///{tmp_path / 'state.db'}", seed=4,
                       faults=[_crash("stream.worker-*", "80ms")], batch_cost="20ms",
                       destination="sqlite:///{out}/sink.db")
    report = run_doc(doc, tmp_path / "out")
    assert_all_held(report)
    assert numbers(report)["redelivered_batches"] >= 1
    db = sqlite3.connect(tmp_path / "out" / "sink.db")
    try:
        rows = db.execute("SELECT batch_id, records FROM batches").fetchall()
    finally:
        db.close()
    batches = [msgspec.json.decode(blob, type=Batch) for _, blob in rows]
    assert [b.batch_id for b in batches] == [bid for bid, _ in rows]
    src = BASE_STREAM["source"]
    assert_each_once(batches,
                     source_items(src["records"], src["keys"], src["payload_bytes"], seed=4))
