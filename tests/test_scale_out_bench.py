"""benchmarks/scale_out.py: the steady window and the recovery time read from a run's
samples (synthetic samples, no processes), and a ``--quick`` run across real node
processes printing one JSON line of positive figures."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from runtime.scenario import FaultEvent, Sample

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _sample_windows import faults_of, recovery, steady  # noqa: E402

WIDTH = 0.25


def samples(rates: list[float], kill_at: float | None = None) -> list[Sample]:
    """One bucket of ``WIDTH`` s per rate (units/s), a kill_node event in its bucket."""
    out, done = [], 0
    for i, rate in enumerate(rates):
        t = (i + 1) * WIDTH
        done += round(rate * WIDTH)
        events = [FaultEvent(kill_at, "kill_node", "node-1")] \
            if kill_at is not None and t - WIDTH <= kill_at < t else []
        out.append(Sample(t=t, width=WIDTH, completed=done, throughput=rate, p50=None,
                          p99=None, max=None, latency_count=0, in_flight=0,
                          faults=len(events), restarts=0, fault_events=events))
    return out


def test_the_steady_window_leaves_out_the_first_bucket_and_the_idle_ones() -> None:
    run = samples([0, 0, 50, 100, 100, 100, 100, 0, 0])
    window = steady(run)
    assert window is not None
    assert (window.first, window.last) == (2, 6)  # from the end of the first busy bucket
    assert window.completed == 100 and window.seconds == pytest.approx(1.0)
    assert window.throughput == pytest.approx(100.0)
    assert steady(samples([0, 100, 0])) is None  # one busy bucket is no window


def test_recovery_is_from_the_kill_to_throughput_back_at_90_percent_of_before() -> None:
    rates = [100.0] * 20 + [50.0] * 12 + [100.0] * 20  # halved for 3 s from t = 5 s
    run = samples(rates, kill_at=5.1)
    kills = faults_of(run, "kill_node")
    assert [k.t for k in kills] == [5.1]
    found = recovery(run, kills[0])
    assert found is not None and found.before == pytest.approx(100.0)
    assert found.lowest == pytest.approx(50.0)
    # back once the smoothed (3-bucket) rate reaches 90: the bucket ending at 8.5 s
    assert found.seconds == pytest.approx(8.5 - 5.1)


def test_a_run_that_never_comes_back_is_not_recovered() -> None:
    run = samples([100.0] * 20 + [40.0] * 20, kill_at=5.0)
    found = recovery(run, faults_of(run, "kill_node")[0])
    assert found is not None and found.seconds is None and found.lowest == pytest.approx(40.0)


def test_a_kill_before_the_work_has_nothing_to_compare_with() -> None:
    run = samples([0.0, 0.0, 100.0, 100.0, 100.0], kill_at=0.1)
    assert recovery(run, faults_of(run, "kill_node")[0]) is None


@pytest.mark.real_processes
def test_quick_prints_one_json_line_of_positive_figures(
        postgres_url: Callable[..., str]) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "scale_out.py"), "--quick",
         "--store", postgres_url()],
        capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert result["benchmark"] == "scale_out" and result["quick"] is True
    assert result["passed"] is True and result["recovery"] == []
    runs = result["runs"]
    assert [(r["system"], r["nodes"]) for r in runs] == [("stream", 2), ("queue", 2)]
    for run in runs:
        assert run["unit"] in ("records committed", "messages acked")
        for key in ("throughput", "report_throughput", "window_s", "units", "per_cpu_s",
                    "driver_cpu_s", "start_up_s"):
            assert run[key] > 0, (key, run)
        assert sorted(run["node_cpu_by_node"]) == ["node-1", "node-2"]
        assert all(v >= 0 for v in run["node_cpu_by_node"].values())
        assert all(v > 0 for v in run["report_node_cpu_s"].values())  # the agents' figure
        assert 0 <= run["node_share"] <= 1
    assert result["median"]["stream"]["2"]["throughput"] > 0
    assert result["goals"] == {"recovery_s": result["lease_ttl"] + 2.0}
    assert any(line.startswith("stream") for line in lines[:-1])  # the table
