"""A sweep: systems x fault kinds x rates x seeds, each point a scenario run.

Per system and seed the no-fault run goes first: its duration places the
fault window of the other points (see :func:`fault_window`) and its
throughput is what their recovery is measured against. Every finished run
is appended to ``runs.jsonl`` and its buckets to ``samples.jsonl`` at once,
so a sweep cut short keeps what it measured.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import msgspec

from runtime.bench import _analysis as analysis
from runtime.bench._kinds import fault_window
from runtime.bench._point import PointSettings, run_point, sample_rows
from runtime.bench._records import Point, RunRecord, SampleRow


class Target(msgspec.Struct, frozen=True):
    """A system and the scenario file its points run."""

    system: str
    scenario: str


class SweepSpec(msgspec.Struct, frozen=True):
    targets: list[Target]
    faults: list[str]
    rates: list[float]
    """Faults per second; 0 (the baseline) is always run first."""
    seeds: list[int]
    settings: PointSettings

    def points(self, target: Target, seed: int) -> list[Point]:
        baseline = Point(target.system, target.scenario, self.faults[0], 0.0, seed)
        return [baseline] + [Point(target.system, target.scenario, fault, rate, seed)
                             for fault in self.faults for rate in self.rates if rate > 0]

    def total(self) -> int:
        return len(self.targets) * len(self.seeds) * len(self.points(self.targets[0], 0))


class SweepResult(msgspec.Struct):
    runs: list[RunRecord]
    samples: list[SampleRow]


Progress = Callable[[Point, RunRecord | None], None]


def run_sweep(spec: SweepSpec, out: Path, progress: Progress | None = None) -> SweepResult:
    """Run every point (``progress(point, None)`` before, ``(point, record)`` after each)."""
    out.mkdir(parents=True, exist_ok=True)
    result = SweepResult([], [])
    encoder = msgspec.json.Encoder()
    with (out / "runs.jsonl").open("wb") as runs_file, \
            (out / "samples.jsonl").open("wb") as samples_file:
        for target in spec.targets:
            for seed in spec.seeds:
                window: tuple[float, float] | None = None
                baseline: float | None = None
                for point in spec.points(target, seed):
                    if progress is not None:
                        progress(point, None)
                    record, samples = run_point(point, out, spec.settings, window, baseline)
                    if point.rate == 0:
                        window = fault_window(record.elapsed_s)
                        baseline = analysis.no_fault_rate(samples)
                    rows = sample_rows(record, samples)
                    runs_file.write(encoder.encode(record) + b"\n")
                    runs_file.flush()
                    samples_file.write(b"".join(encoder.encode(r) + b"\n" for r in rows))
                    samples_file.flush()
                    result.runs.append(record)
                    result.samples.extend(rows)
                    if progress is not None:
                        progress(point, record)
    return result
