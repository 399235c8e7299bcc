"""What a sweep writes: one :class:`RunRecord` per run (``runs.jsonl``) and one
:class:`SampleRow` per time bucket per run (``samples.jsonl``)."""

from __future__ import annotations

import msgspec

from runtime.scenario import FaultEvent, InvariantResult, MetricValue, Sample

NO_FAULT = "none"


class Point(msgspec.Struct, frozen=True):
    """One sweep point: a scenario file run with one fault kind at one rate, one seed."""

    system: str
    scenario: str
    fault: str
    rate: float
    seed: int

    @property
    def run_id(self) -> str:
        fault = NO_FAULT if self.rate == 0 else self.fault
        return f"{self.system}-{fault}-{self.rate:g}-s{self.seed}"


class Metastability(msgspec.Struct, frozen=True):
    """Did throughput come back to ``threshold`` of the no-fault rate after the last fault?"""

    verdict: str
    """``recovered``, ``slow`` (later than ``within``), ``not recovered`` or ``inconclusive``."""
    last_fault_at: float
    recovered_after: float | None
    within: float
    threshold: float
    baseline_rate: float
    detail: str


class RunRecord(msgspec.Struct):
    """One line of ``runs.jsonl``."""

    run: str
    system: str
    scenario: str
    fault: str
    rate: float
    seed: int
    clock: str
    passed: bool
    correct: bool
    """Every invariant held, fault-exercise floors aside (those say a fault was
    seen, not that a result was wrong)."""
    invariants: list[InvariantResult]
    unit: str
    completed: int
    elapsed_s: float
    goodput: float
    latency: dict[str, float | int]
    window: tuple[float, float] | None
    faults_planned: int
    faults_fired: int
    fault_events: list[FaultEvent]
    fault_lasts: float
    recovery_times: list[float]
    unrecovered: int
    metastability: Metastability | None
    metrics: dict[str, MetricValue]
    trace_digest: str
    replay: str
    out: str


class SampleRow(Sample, frozen=True, kw_only=True):
    """One line of ``samples.jsonl``: a bucket of one run, with the run's coordinates."""

    run: str
    system: str
    fault: str
    rate: float
    seed: int
