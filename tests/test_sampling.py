"""Runtime samples (``[scenario] samples``): what the sampler writes, that it is
deterministic under simulated time, and the sweep arithmetic built on it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime import cli
from runtime.bench import _analysis as analysis
from runtime.scenario import FaultEvent, Sample

TINY = (Path(__file__).parent / "bench_helpers" / "tiny_stream.toml").read_text()
CRASHES = '\n[[faults]]\nkind = "crash"\ntarget = "stream.worker-*"\nevery = "230ms"\n'


def _scenario(tmp_path: Path, samples: str, extra: str = "") -> Path:
    text = TINY.replace('timeout = "1m"', f'timeout = "1m"\nsamples = "{samples}"')
    path = tmp_path / "sampled.toml"
    path.write_text(text.replace("[expect]", extra + "\n[expect]"))
    return path


def _run(path: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    capsys.readouterr()
    assert cli.main(["run", str(path), "--out", str(out), "--json"]) == 0
    report: dict[str, object] = json.loads(capsys.readouterr().out)
    return report


def test_a_sampled_run_writes_one_line_per_bucket_from_the_systems_counters(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = _run(_scenario(tmp_path, "50ms", CRASHES), tmp_path / "out", capsys)
    rows = [json.loads(line) for line in (tmp_path / "out" / "samples.jsonl").open()]
    assert len(rows) >= 10
    assert all(abs(r["width"] - 0.05) < 1e-6 for r in rows[:-1])
    completed = [r["completed"] for r in rows]
    assert completed == sorted(completed) and completed[-1] == 2000
    assert round(sum(r["throughput"] * r["width"] for r in rows)) == 2000 - (
        rows[0]["completed"] - round(rows[0]["throughput"] * rows[0]["width"]))
    metrics = report["metrics"]
    assert isinstance(metrics, dict)
    assert sum(r["faults"] for r in rows) == metrics["faults_injected"] > 0
    assert sum(r["restarts"] for r in rows) == metrics["restarts"]
    for r in rows:
        assert len(r["fault_events"]) == r["faults"]
        assert all(r["t"] - r["width"] - 1e-9 <= e["t"] <= r["t"] and e["kind"] == "crash"
                   for e in r["fault_events"])
    with_latency = [r for r in rows if r["p50"] is not None]
    assert with_latency and all(0 < r["p50"] <= r["p99"] <= r["max"] for r in with_latency)
    latency = report["latency"]
    assert isinstance(latency, dict) and latency["count"] == sum(
        r["latency_count"] for r in rows)


def test_sampling_replays_exactly_under_simulated_time(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _scenario(tmp_path, "100ms", CRASHES)
    first = _run(path, tmp_path / "a", capsys)
    second = _run(path, tmp_path / "b", capsys)
    assert first["trace_digest"] == second["trace_digest"]
    assert (tmp_path / "a" / "samples.jsonl").read_bytes() == \
        (tmp_path / "b" / "samples.jsonl").read_bytes()


def test_without_samples_nothing_is_sampled(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "plain.toml"
    path.write_text(TINY)
    report = _run(path, tmp_path / "out", capsys)
    assert not (tmp_path / "out" / "samples.jsonl").exists()
    assert "latency" not in report


@pytest.mark.parametrize(("value", "message"), [
    ("0ms", "scenario.samples: expected a positive duration"),
    ("fast", "scenario.samples: expected a duration such as '250ms'"),
])
def test_a_bad_samples_value_exits_2_naming_the_field(
        tmp_path: Path, value: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = _scenario(tmp_path, value)
    assert cli.main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    assert f"{path}: {message}" in capsys.readouterr().err


def _series(rates: list[float], width: float = 0.1) -> list[Sample]:
    done, out = 0, []
    for i, rate in enumerate(rates):
        done += round(rate * width)
        out.append(Sample(t=round((i + 1) * width, 6), width=width, completed=done,
                          throughput=rate, p50=None, p99=None, max=None, latency_count=0,
                          in_flight=0, faults=0, restarts=0))
    return out


def _crash(t: float) -> FaultEvent:
    return FaultEvent(t, "crash", "w")


def test_recovery_is_measured_to_the_first_bucket_back_at_90_percent() -> None:
    samples = _series([100.0] * 5 + [0.0] * 4 + [100.0] * 6)
    times, missing = analysis.recovery_times(samples, [_crash(0.55)], baseline=100.0)
    # smoothed over three buckets, 100 comes back in full at the bucket ending at 1.1 s
    assert missing == 0 and times == [pytest.approx(1.1 - 0.55)]
    assert analysis.no_fault_rate(_series([100.0] * 10)) == 100.0


@pytest.mark.parametrize(("rates", "within", "verdict"), [
    ([100.0] * 5 + [0.0] * 2 + [100.0] * 8, 1.0, "recovered"),
    ([100.0] * 5 + [0.0] * 2 + [50.0] * 10 + [100.0] * 5, 0.5, "slow"),
    ([100.0] * 5 + [0.0] * 2 + [50.0] * 20, 0.5, "not recovered"),
    ([100.0] * 5 + [0.0] * 2 + [50.0] * 2, 1.0, "inconclusive"),
])
def test_metastability_verdicts(rates: list[float], within: float, verdict: str) -> None:
    result = analysis.metastability(_series(rates), [_crash(0.55)], 100.0, within)
    assert result is not None and result.verdict == verdict
    assert (result.recovered_after is not None) == (verdict in {"recovered", "slow"})


def test_a_run_without_faults_has_no_metastability_verdict() -> None:
    assert analysis.metastability(_series([100.0] * 5), [], 100.0, 1.0) is None


@pytest.mark.parametrize(("stop_at", "readings"), [
    (0.24, [10, 20]),  # inside the second refresh (0.23 .. 0.26): it ends whole
    (0.32, [10, 20, 30]),  # between readings: one more, for the partial bucket
])
def test_a_refresh_runs_before_every_reading_and_stop_lets_it_finish(
        stop_at: float, readings: list[int]) -> None:
    """Counters kept elsewhere (a queue's servers on other nodes) are brought up to date
    by the probe's refresh before each reading; ``stop`` during a refresh waits for it
    (cancelling it could leave the counters half updated)."""
    from _helpers import sim

    from runtime import Runtime
    from runtime.scenario import Observation, Sampler

    async def main() -> tuple[list[Sample], int, int]:
        async with Runtime() as rt:
            seen: list[Sample] = []
            counted = [0]
            started = [0]

            async def refresh() -> None:  # a read taking 30 ms, then 10 more units
                started[0] += 1
                await rt.sleep(0.03)
                counted[0] += 10

            sampler = Sampler(0.1, seen.append)
            sampler.start(rt, lambda: Observation(completed=counted[0]), refresh)
            await rt.sleep(stop_at)
            await sampler.stop()
            return seen, started[0], counted[0] // 10

    seen, started, finished = sim(main)
    assert [s.completed for s in seen] == readings
    assert started == finished == len(readings)  # no refresh was cut mid-way
    assert all(s.throughput > 0 for s in seen)
