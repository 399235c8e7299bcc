"""Pure arithmetic on one run's samples: active span, smoothed throughput,
recovery after each fault, and the metastability verdict.

Definitions (the report repeats them):

- A run's *active span* runs from the sampler's start to the end of the last
  bucket in which work completed (checks after the work are not counted).
- *Smoothed throughput* at a bucket is the mean of it and its neighbours
  (three buckets, centred), which damps the noise of short buckets.
- The *no-fault rate* is the median smoothed throughput of the baseline run
  (same system and seed, no faults) between 10 % and 90 % of its active span.
- A fault's *recovery time* is from the fault to the end of the first later
  bucket whose smoothed throughput is back at ``threshold`` (90 %) of the
  no-fault rate; a fault after which that never happens in the active span is
  *unrecovered*.
- *Metastability check*: after the last fault, throughput must be back at
  90 % of the no-fault rate within ``within`` seconds.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from runtime.bench._records import Metastability
from runtime.scenario import FaultEvent, Sample

THRESHOLD = 0.9


def active_end(samples: Sequence[Sample]) -> float:
    """End of the last bucket in which ``completed`` grew (0 if nothing completed)."""
    end, before = 0.0, None
    for s in samples:
        if (before is not None and s.completed > before) or (before is None and s.completed > 0):
            end = s.t
        before = s.completed
    return end


def active(samples: Sequence[Sample]) -> list[Sample]:
    end = active_end(samples)
    return [s for s in samples if s.t <= end + 1e-9]


def started_at(samples: Sequence[Sample]) -> float:
    return samples[0].t - samples[0].width if samples else 0.0


def smoothed(samples: Sequence[Sample]) -> list[float]:
    values = [s.throughput for s in samples]
    out = []
    for i in range(len(values)):
        window = values[max(0, i - 1):i + 2]
        out.append(sum(window) / len(window))
    return out


def goodput(samples: Sequence[Sample]) -> tuple[int, float, float]:
    """(units completed, active seconds, units per second over the active span)."""
    span = active(samples)
    if not span:
        return 0, 0.0, 0.0
    first = samples[0].completed - samples[0].throughput * samples[0].width
    done = span[-1].completed - round(first)
    seconds = span[-1].t - started_at(samples)
    return span[-1].completed, seconds, done / seconds if seconds > 0 else 0.0


def no_fault_rate(samples: Sequence[Sample]) -> float:
    span = active(samples)
    if not span:
        return 0.0
    t0, t1 = started_at(span), span[-1].t
    rates = [r for s, r in zip(span, smoothed(span), strict=True)
             if t0 + 0.1 * (t1 - t0) <= s.t <= t0 + 0.9 * (t1 - t0)]
    return statistics.median(rates) if rates else statistics.median(smoothed(span))


def _back_at(samples: Sequence[Sample], rates: Sequence[float], after: float,
             target: float) -> float | None:
    for s, r in zip(samples, rates, strict=True):
        if s.t > after and r >= target:
            return s.t
    return None


def recovery_times(samples: Sequence[Sample], events: Sequence[FaultEvent],
                   baseline: float) -> tuple[list[float], int]:
    """(recovery seconds of each recovered fault, number of unrecovered faults)."""
    span = active(samples)
    rates = smoothed(span)
    found, missing = [], 0
    for event in events:
        back = _back_at(span, rates, event.t, THRESHOLD * baseline)
        if back is None:
            missing += 1
        else:
            found.append(back - event.t)
    return found, missing


def metastability(samples: Sequence[Sample], events: Sequence[FaultEvent], baseline: float,
                  within: float, fault_lasts: float = 0.0) -> Metastability | None:
    """The verdict after the last fault (``None`` for a run without faults).

    A fault that lasts (a pause) counts from its end.
    """
    if not events:
        return None
    last = max(e.t for e in events) + fault_lasts
    span = active(samples)
    end = span[-1].t if span else last
    back = _back_at(span, smoothed(span), last, THRESHOLD * baseline)
    target = f"{THRESHOLD:.0%} of the no-fault rate ({baseline:,.0f}/s)"
    if back is not None:
        after = back - last
        verdict = "recovered" if after <= within else "slow"
        detail = (f"back at {target} {after:.2f} s after the last fault "
                  f"({'within' if verdict == 'recovered' else 'later than'} {within:g} s)")
        return Metastability(verdict, last, after, within, THRESHOLD, baseline, detail)
    if end - last < within:
        return Metastability(
            "inconclusive", last, None, within, THRESHOLD, baseline,
            f"the work ended {max(0.0, end - last):.2f} s after the last fault, before "
            f"{within:g} s, without throughput reaching {target}")
    return Metastability(
        "not recovered", last, None, within, THRESHOLD, baseline,
        f"throughput did not return to {target} in the {end - last:.2f} s of work "
        "after the last fault")
