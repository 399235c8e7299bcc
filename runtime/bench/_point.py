"""Running one sweep point as a scenario run, and what it leaves behind.

Each point writes the exact scenario it ran to ``<out>/runs/<run>/scenario.toml``
(the original with the sweep's clock, seed, ``samples`` and fault plan), so
its replay is a plain ``shardline run`` of that file. Under the simulated
clock the replay's trace digest equals the sweep's; on the real clock it
runs the same plan and seed (timing differs, as it does between any runs).
"""

from __future__ import annotations

import shlex
import shutil
import sys
import tomllib
from pathlib import Path
from typing import Any

import msgspec
import structlog

from runtime._errors import ScenarioError
from runtime._logging import configure_logging
from runtime.bench import _analysis as analysis
from runtime.bench._kinds import fault_entry, lasting, planned_count
from runtime.bench._records import NO_FAULT, Point, RunRecord, SampleRow
from runtime.scenario import Sample, load_scenario, load_system, run_scenario


class PointSettings(msgspec.Struct, frozen=True):
    """What every point of a sweep shares."""

    clock: str
    bucket: float
    recover_within: float
    user_scenario: bool


def _scenario_document(point: Point, settings: PointSettings,
                       window: tuple[float, float] | None) -> tuple[dict[str, Any], float]:
    path = Path(point.scenario)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError(f"{point.scenario}: cannot read scenario file: {exc}") from exc
    user_faults = raw.pop("faults", [])
    header = raw.setdefault("scenario", {})
    header.update(name=point.run_id, clock=settings.clock, seed=point.seed,
                  samples=f"{settings.bucket * 1000:g}ms")
    lasts = 0.0
    if point.rate > 0 and window is not None:
        targets = load_system(point.system).bench_fault_targets
        entry = fault_entry(point.fault, targets, point.rate, window[0], window[1], user_faults)
        raw["faults"] = [entry]
        lasts = lasting(point.fault, entry)
    return raw, lasts


def replay_command(scenario_file: Path, out: Path, original: Path | None) -> str:
    command = f"shardline run {shlex.quote(str(scenario_file))} --out {shlex.quote(str(out))}"
    if original is not None:  # user functions named by the file live beside the original
        command = f"PYTHONPATH={shlex.quote(str(original.resolve().parent))} {command}"
    return command


def run_point(point: Point, root: Path, settings: PointSettings,
              window: tuple[float, float] | None,
              baseline_rate: float | None) -> tuple[RunRecord, list[Sample]]:
    """Run ``point`` under ``root/runs/<run>/`` and measure it.

    ``window`` is the fault window (from the baseline run); ``baseline_rate``
    the no-fault throughput that recovery is measured against (``None`` for
    the baseline itself). ``ScenarioError`` for a bad scenario file.
    """
    run_dir = root / "runs" / point.run_id
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh store: never resume an old run
    run_dir.mkdir(parents=True)
    document, lasts = _scenario_document(point, settings, window)
    scenario_file = run_dir / "scenario.toml"
    import tomli_w  # the [bench] extra, checked before the sweep starts (BENCH_EXTRA)

    scenario_file.write_text(tomli_w.dumps(document), encoding="utf-8")
    original = Path(point.scenario).resolve().parent
    if str(original) not in sys.path:
        sys.path.insert(0, str(original))
    loaded = load_scenario(scenario_file)
    samples: list[Sample] = []
    out = run_dir / "out"
    out.mkdir()
    saved = structlog.get_config()  # the events file closes after the run: put logging back
    try:
        with (out / "events.jsonl").open("a", encoding="utf-8") as events:
            configure_logging(json=True, level="warning", stream=events)
            report = run_scenario(loaded, out=out, on_sample=samples.append)
    finally:
        structlog.configure(**saved)
    events_seen = [e for s in samples for e in s.fault_events]
    fired = sum(s.faults for s in samples)
    completed, seconds, rate = analysis.goodput(samples)
    recoveries: list[float] = []
    missing = 0
    verdict = None
    if baseline_rate is not None and events_seen:
        recoveries, missing = analysis.recovery_times(samples, events_seen, baseline_rate)
        verdict = analysis.metastability(samples, events_seen, baseline_rate,
                                         settings.recover_within, lasts)
    latency = report.extra.get("latency", {})
    record = RunRecord(
        run=point.run_id, system=point.system, scenario=report.scenario,
        fault=NO_FAULT if point.rate == 0 else point.fault, rate=point.rate, seed=point.seed,
        clock=settings.clock, passed=report.passed,
        correct=all(i.held for i in report.invariants if not i.name.startswith("exercised_")),
        invariants=report.invariants,
        unit=str(report.extra.get("throughput_unit", "units")), completed=completed,
        elapsed_s=round(seconds, 6), goodput=round(rate, 3),
        latency=latency if isinstance(latency, dict) else {},
        window=window if point.rate > 0 else None,
        faults_planned=planned_count(point.rate, window[1]) if point.rate and window else 0,
        faults_fired=fired, fault_events=events_seen, fault_lasts=lasts,
        recovery_times=[round(r, 6) for r in recoveries], unrecovered=missing,
        metastability=verdict, metrics=report.metrics, trace_digest=report.trace_digest,
        replay=replay_command(scenario_file, run_dir / "replay",
                              Path(point.scenario) if settings.user_scenario else None),
        out=str(out),
    )
    return record, samples


def sample_rows(record: RunRecord, samples: list[Sample]) -> list[SampleRow]:
    """``samples`` with the run's coordinates, as the lines of ``samples.jsonl``."""
    return [SampleRow(**msgspec.structs.asdict(s), run=record.run, system=record.system,
                      fault=record.fault, rate=record.rate, seed=record.seed) for s in samples]
