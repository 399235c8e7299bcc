"""Failure-injection benchmarks: ``shardline bench faults`` (matplotlib: ``shardline[bench]``).

A sweep runs scenario files over fault kinds x rates x seeds, samples each
run from the runtime, checks every run's invariants, and writes
``samples.jsonl``, ``runs.jsonl``, PNG+SVG figures, ``report.md`` and
``report.html``.
"""

from runtime.bench._cli import main
from runtime.bench._kinds import KINDS, FaultKind
from runtime.bench._records import Metastability, Point, RunRecord, SampleRow
from runtime.bench._sweep import SweepResult, SweepSpec, Target, run_sweep

__all__ = [
    "KINDS",
    "FaultKind",
    "Metastability",
    "Point",
    "RunRecord",
    "SampleRow",
    "SweepResult",
    "SweepSpec",
    "Target",
    "main",
    "run_sweep",
]
