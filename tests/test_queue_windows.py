"""Reduce windows: by count, by age, and flushed when the input ends, so every original
contributes; keys narrow tier by tier."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.queue_helpers import (
    assert_all_held,
    direct_sums,
    generated,
    quiet_logs,
    run_doc,
    scenario_doc,
)


@pytest.fixture(autouse=True)
def _quiet() -> None:
    quiet_logs()


def tiers_of(report_tiers: object) -> dict[str, dict[str, int]]:
    assert isinstance(report_tiers, list)
    return {t["name"]: t for t in report_tiers}


def test_windows_close_by_count_and_keys_narrow_tier_by_tier(tmp_path: Path) -> None:
    doc = scenario_doc(source={"records": 600, "keys": 60}, tiers=[
        {"name": "transform", "kind": "map", "out_keys": 12},
        {"name": "summarize", "kind": "reduce", "window": 10, "out_keys": 3},
        {"name": "aggregate", "kind": "reduce", "window": 4}])
    report = run_doc(doc, tmp_path)
    assert_all_held(report)
    tiers = tiers_of(report.extra["tiers"])
    assert [tiers[t]["distinct_keys_in"] for t in ("transform", "summarize", "aggregate")] \
        == [60, 12, 3]
    # 600 messages over 12 keys in windows of 10: at least 60 full windows, at most
    # one partial window more per key
    assert 60 <= tiers["summarize"]["messages_out"] <= 60 + 12
    assert tiers["summarize"]["messages_out"] == tiers["aggregate"]["messages_in"]
    assert report.extra["result"] == direct_sums(generated(doc))


def test_partial_windows_are_flushed_when_the_input_ends(tmp_path: Path) -> None:
    """No key ever fills its window: every window is partial and closed by the flush."""
    doc = scenario_doc(source={"records": 200, "keys": 20}, tiers=[
        {"name": "transform", "kind": "map"},
        {"name": "summarize", "kind": "reduce", "window": 1000, "out_keys": 4},
        {"name": "aggregate", "kind": "reduce", "window": 1000}])
    report = run_doc(doc, tmp_path)
    assert_all_held(report)
    tiers = tiers_of(report.extra["tiers"])
    assert tiers["summarize"]["messages_out"] == 20  # one flushed window per key
    assert tiers["aggregate"]["messages_out"] == 4
    assert report.extra["result"] == direct_sums(generated(doc))


def test_time_windows_close_while_input_still_flows(tmp_path: Path) -> None:
    doc = scenario_doc(source={"records": 400, "keys": 10}, rate=400.0, tiers=[
        {"name": "transform", "kind": "map"},
        {"name": "summarize", "kind": "reduce", "window": 1000, "window_time": "100ms"}])
    report = run_doc(doc, tmp_path)
    assert_all_held(report)
    tiers = tiers_of(report.extra["tiers"])
    # one second of input in windows of at most 100 ms: far more than one per key
    assert tiers["summarize"]["messages_out"] >= 5 * 10
    assert report.extra["result"] == direct_sums(generated(doc))
