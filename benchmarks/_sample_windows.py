"""Throughput of a run's steady part and its recovery after a node kill, from the
run's samples (``[scenario] samples``: one ``runtime.scenario.Sample`` per bucket).

- **steady window**: from the end of the first bucket in which work completed
  to the end of the last one (``runtime.bench``'s active end). The first
  bucket (warm-up: connections, first lease grants) is left out so that the
  window starts and ends at a sample, where the benchmark read the CPU
  clocks; its throughput is the units completed in between over the time.
- **recovery** after a fault: ``before`` is the steady throughput up to the
  fault; the recovery time is ``runtime.bench``'s (the faults sweeps'): from
  the fault to the end of the first later bucket whose smoothed throughput
  (three buckets, centred) is back at 90 % of ``before``.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from runtime.bench._analysis import THRESHOLD, active, recovery_times, smoothed
from runtime.scenario import FaultEvent, Sample


class Steady(msgspec.Struct, frozen=True):
    """The steady window of a run: bucket indices ``first`` .. ``last``."""

    first: int
    last: int
    completed: int
    seconds: float

    @property
    def throughput(self) -> float:
        return self.completed / self.seconds


class Recovery(msgspec.Struct, frozen=True):
    """What a fault at ``fault_t`` did to the throughput (units per second)."""

    fault_t: float
    before: float
    lowest: float
    """Lowest smoothed throughput from the fault to the recovery (or the work's end)."""
    seconds: float | None
    """From the fault to throughput back at 90 % of ``before``; None if it never was."""


def steady(samples: Sequence[Sample], until: float | None = None) -> Steady | None:
    """The steady window (of the buckets ending at or before ``until``); None with fewer
    than two buckets in which work completed."""
    span = active([s for s in samples if until is None or s.t <= until])
    first = next((i for i, s in enumerate(span) if s.throughput > 0), None)
    last = len(span) - 1
    if first is None or last <= first:
        return None
    return Steady(first, last, span[last].completed - span[first].completed,
                  span[last].t - span[first].t)


def recovery(samples: Sequence[Sample], fault: FaultEvent) -> Recovery | None:
    """The recovery after ``fault``; None when the run has no steady part before it."""
    window = steady(samples, until=fault.t)
    if window is None:
        return None
    before = window.throughput
    found, _ = recovery_times(samples, [fault], before)
    seconds = found[0] if found else None
    span = active(samples)
    end = fault.t + seconds if seconds is not None else span[-1].t
    lowest = min((r for s, r in zip(span, smoothed(span), strict=True)
                  if fault.t < s.t <= end + 1e-9), default=before)
    return Recovery(fault.t, before, lowest, seconds)


def faults_of(samples: Sequence[Sample], kind: str) -> list[FaultEvent]:
    """The faults of ``kind`` the samples saw injected, in order."""
    return [e for s in samples for e in s.fault_events if e.kind == kind]


__all__ = ["THRESHOLD", "Recovery", "Steady", "faults_of", "recovery", "steady"]
