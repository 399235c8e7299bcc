"""Each fault the issue lists, on a small pipeline: the fault happens, and nothing is
lost, nothing counts twice, per-key order holds, the result is exact.

Every run is a scenario document through ``run_scenario`` (what ``shardline
run`` does), in simulated time; the result is compared with sums computed
here over the originals, and the metrics must show the fault took effect.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any

import pytest

from runtime.scenario import Report
from tests.queue_helpers import (
    BASE_QUEUE,
    assert_all_held,
    direct_sums,
    generated,
    invariants,
    quiet_logs,
    run_doc,
    scenario_doc,
)


@pytest.fixture(autouse=True)
def _quiet() -> None:
    quiet_logs()


def metrics(report: Report) -> dict[str, float]:
    return {k: v for k, v in report.metrics.items() if isinstance(v, int | float)}


def run_exact(doc: dict[str, Any], out: Path) -> dict[str, float]:
    """Run ``doc``; every invariant holds and the result is the originals' exact sums."""
    report = run_doc(doc, out)
    assert_all_held(report)
    assert report.extra["result"] == direct_sums(generated(doc))
    return metrics(report)


def slow_transform(cost: str) -> list[dict[str, Any]]:
    """The base tiers with a transform step costing ``cost`` (faults land mid-batch)."""
    first, *rest = BASE_QUEUE["tiers"]
    return [{**first, "process_cost": cost}, *rest]


def test_clients_crashing_mid_message_lose_nothing_and_count_nothing_twice(
    tmp_path: Path,
) -> None:
    # Server requests are often late, so a crash can land while a client waits for its
    # outputs to be stored. Each client is crashed about every 120 ms or more: faster
    # than its restart backoff, armed crashes would pile up and it would never run.
    doc = scenario_doc(
        f"sqlite:///{tmp_path}/state.db", tiers=slow_transform("10ms"), faults=[
            {"kind": "delay", "target": "queue.server-*", "probability": 0.5, "delay": "5ms"},
            {"kind": "crash", "target": "queue.transform-*", "every": "60ms"},
            {"kind": "crash", "target": "queue.summarize-*", "every": "110ms"},
            {"kind": "crash", "target": "queue.aggregate-*", "every": "170ms"},
            {"kind": "crash", "target": "queue.final", "every": "230ms"},
        ])
    m = run_exact(doc, tmp_path / "out")
    assert m["restarts"] >= 10
    # crashes landed with messages out: they came back after the visibility timeout
    assert m["visibility_expired"] >= 1 and m["redeliveries"] >= 1
    # and some landed between enqueueing outputs and acking inputs: the repeat was dropped
    assert m["duplicates_dropped"] >= 1


def test_a_client_paused_past_its_visibility_timeout_has_its_late_ack_refused(
    tmp_path: Path,
) -> None:
    doc = scenario_doc(tiers=slow_transform("20ms"), faults=[
        {"kind": "pause", "target": "queue.transform-*", "at": "35ms", "duration": "2s"}])
    m = run_exact(doc, tmp_path / "out")
    assert m["late_acks_refused"] >= 1 and m["acks_refused"] >= 1
    assert m["duplicates_dropped"] >= 1  # its outputs, already made by another client
    assert m["redeliveries"] >= 1 and m["restarts"] == 0


def test_queue_servers_crashing_and_restarting_lose_nothing(tmp_path: Path) -> None:
    doc = scenario_doc(f"sqlite:///{tmp_path}/state.db", faults=[
        {"kind": "crash", "target": "queue.server-*", "every": "100ms"},
        {"kind": "delay", "target": "queue.server-*", "probability": 0.2, "delay": "2ms"}])
    m = run_exact(doc, tmp_path / "out")
    assert m["server_recoveries"] >= 3 and m["request_retries"] >= 1
    assert m["restarts"] >= 3


def test_store_errors_are_retried_and_change_nothing(tmp_path: Path) -> None:
    doc = scenario_doc(f"sqlite:///{tmp_path}/state.db", faults=[
        {"kind": "store_error", "target": "store.*", "probability": 0.03}])
    m = run_exact(doc, tmp_path / "out")
    assert m["faults_injected"] >= 5 and m["request_retries"] >= 1
    assert m["server_recoveries"] >= 1


def test_poison_in_a_reduce_tier_dead_letters_a_summary_and_counts_its_originals_out(
    tmp_path: Path,
) -> None:
    """Poison after the first tier: the dead letter stands for one original, but it is an
    intermediate message. Others flow on; the ledger counts it out by its ledger."""
    doc = scenario_doc(max_receives=2, lineage="full",
                       poison={"key": "transform-0?", "body": "*", "tier": "summarize"})
    report = run_doc(doc, tmp_path / "out")
    found = assert_all_held(report)
    dead = report.extra["dead_letters"]
    assert isinstance(dead, list) and dead
    assert {d["queue"] for d in dead} == {"summarize"}
    assert all(d["counted_out"] and d["receives"] == 2 for d in dead)
    ledger = report.extra["ledger"]
    assert isinstance(ledger, dict)
    counted_out = ledger["dead_letters_counted_out"]["count"]
    assert counted_out == sum(d["originals"] for d in dead) == len(dead)
    assert ledger["final"]["count"] + counted_out == 400
    assert f"minus {len(dead)} dead letters" in found["result_matches_oracle"].detail


def test_poison_originals_are_dead_lettered_and_every_other_key_flows_on(tmp_path: Path) -> None:
    doc = scenario_doc(max_receives=3, poison={"key": "key-00000?", "body": "*1"})
    report = run_doc(doc, tmp_path / "out")
    assert_all_held(report)
    items = generated(doc)
    poisoned = [(k, b) for k, b in items
                if fnmatch.fnmatchcase(k, "key-00000?") and b.endswith(b"1")]
    assert len(poisoned) >= 2
    assert report.metrics["dead_lettered"] == len(poisoned)
    assert report.extra["result"] == direct_sums(items, minus=poisoned)


def test_a_hot_key_with_half_the_traffic_does_not_hold_up_the_others(tmp_path: Path) -> None:
    """One batch of the hot key out at a time (strict order), the other keys flow at
    their own pace; batched per-key delivery drains the hot key's backlog too."""
    doc = scenario_doc(source={"records": 1200, "keys": 40, "hot_share": 0.5}, rate=3000.0,
                       tiers=slow_transform("5ms"), expect={"max_other_keys_p99": "100ms"})
    report = run_doc(doc, tmp_path / "out")
    found = assert_all_held(report)
    assert found["hot_key_isolation"].held
    m = metrics(report)
    hot, other = m["hot_key_latency_p99_s"], m["other_keys_latency_p99_s"]
    assert other <= 0.1 and hot >= other, (hot, other)
    assert sum(1 for k, _ in generated(doc) if k == "key-000000") > 500


def test_a_hot_key_bound_too_tight_is_reported_as_not_held(tmp_path: Path) -> None:
    """The control for the bound: the same run with an impossible bound fails it."""
    doc = scenario_doc(source={"records": 1200, "keys": 40, "hot_share": 0.5}, rate=3000.0,
                       tiers=slow_transform("5ms"), expect={"max_other_keys_p99": "1ms"})
    report = run_doc(doc, tmp_path / "out")
    assert not report.passed and not invariants(report)["hot_key_isolation"].held


def test_a_seed_replays_the_same_faulty_run_exactly(tmp_path: Path) -> None:
    doc = scenario_doc(tiers=slow_transform("10ms"), faults=[
        {"kind": "crash", "target": "queue.*", "every": "30ms"}])
    first = run_doc(doc, tmp_path / "a")
    second = run_doc(doc, tmp_path / "b")
    assert first.trace_digest == second.trace_digest and first.metrics == second.metrics
    other = run_doc(doc, tmp_path / "c", seed=99)
    assert other.trace_digest != first.trace_digest
    assert_all_held(other)


def test_a_rerun_on_the_same_store_resumes_and_reports_it(tmp_path: Path) -> None:
    doc = scenario_doc(f"sqlite:///{tmp_path}/state.db")
    first = run_doc(doc, tmp_path / "out")
    again = run_doc(doc, tmp_path / "out")
    assert_all_held(again)
    assert invariants(again)["resumed"].held
    assert again.extra["result"] == first.extra["result"]


def test_store_errors_while_the_actors_first_load_their_state_are_retried(
    tmp_path: Path,
) -> None:
    """The first three store reads of the run (the queue servers loading their
    checkpoints) fail: their first start is retried instead of aborting the run."""
    doc = scenario_doc(f"sqlite:///{tmp_path}/state.db", faults=[
        {"kind": "store_error", "target": "store.get", "probability": 1.0, "count": 3}])
    m = run_exact(doc, tmp_path / "out")
    assert m["faults_injected"] == 3


def test_the_checks_read_the_store_past_its_injected_faults(tmp_path: Path) -> None:
    """Half of all log reads fail while the run goes on (queue servers, crashed every
    50 ms, read their journals to recover); the checks and the report read the
    journals after it, and must not be failed by the fault plan."""
    doc = scenario_doc(f"sqlite:///{tmp_path}/state.db", faults=[
        {"kind": "store_error", "target": "store.read", "probability": 0.5},
        {"kind": "crash", "target": "queue.server-*", "every": "50ms"}])
    m = run_exact(doc, tmp_path / "out")
    assert m["faults_injected"] >= 10 and m["server_recoveries"] >= 3
