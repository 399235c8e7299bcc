"""Fault kinds a sweep can raise, and the ``[[faults]]`` entry for one sweep point.

A sweep point sets one kind's *rate* (faults per second of the runtime
clock) inside the point's *fault window*: the kind fires every ``1/rate``
seconds from the window's start, ``round(rate * window)`` times (at least
once). Where a fault lands comes from, in order: the user's scenario (its
first ``[[faults]]`` entry of that kind: target, duration, delay, all), else
this table's target for the system, else the kind's default target.

Node faults (``kill_node``, ``pause_node``, ``partition``) are listed so a
sweep can name them; a point runs only if the scenario's system knows the
kind (the cluster registers them), otherwise the sweep refuses it up front.
"""

from __future__ import annotations

from typing import Any

import msgspec

from runtime.scenario import parse_duration

_ACTORS = {"stream": "stream.worker-*", "queue": "queue.transform-*", "log": "reader.*",
           "deploy": "deploy.host-*"}


class FaultKind(msgspec.Struct, frozen=True):
    """How a sweep aims one fault kind; ``params`` are scenario-file fields."""

    name: str
    targets: dict[str, str]
    default_target: str
    params: dict[str, str] = msgspec.field(default_factory=dict)
    window: bool = False
    """The kind lasts ``duration`` (a pause, an outage): its plot shading covers it."""

    def target_for(self, system: str) -> str:
        return self.targets.get(system, self.default_target)


KINDS: dict[str, FaultKind] = {k.name: k for k in (
    FaultKind("crash", _ACTORS, "*"),
    FaultKind("pause", _ACTORS, "*", {"duration": "300ms"}, window=True),
    FaultKind("delay", _ACTORS, "*", {"delay": "50ms"}),
    FaultKind("store_error", {}, "store.*"),
    FaultKind("destination_error", {"stream": "stream.worker-*.destination"}, "*"),
    FaultKind("lease_expiry", {"stream": "stream.partition-*"}, "*"),
    FaultKind("slow", {"log": "reader.*"}, "*", {"delay": "200ms"}),
    FaultKind("metrics_outage", {"deploy": "deploy.metrics"}, "*", {"duration": "1s"},
              window=True),
    FaultKind("kill_node", {}, "node-*"),
    FaultKind("pause_node", {}, "node-*", {"duration": "1s"}, window=True),
    FaultKind("partition", {}, "node-*", {"duration": "1s"}, window=True),
)}


def planned_count(rate: float, window: float) -> int:
    """Faults a point plans: ``rate`` per second over ``window`` seconds, at least one."""
    return max(1, round(rate * window))


def _duration(seconds: float) -> str:
    return f"{max(seconds, 0.0) * 1000:.3f}ms"


def fault_entry(kind: str, system: str, rate: float, start: float, window: float,
                user: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``[[faults]]`` table for ``kind`` at ``rate`` within ``[start, start + window]``."""
    spec = KINDS.get(kind)
    mine = next((f for f in user if f.get("kind") == kind), None)
    entry: dict[str, Any] = {"kind": kind, "target": spec.target_for(system) if spec else "*",
                             **(spec.params if spec else {})}
    if mine is not None:
        entry.update({k: v for k, v in mine.items()
                      if k in ("target", "duration", "delay", "all")})
    interval = 1.0 / rate
    entry["every"] = _duration(interval)
    # The first trigger fires one interval after ``start``: start it that much earlier.
    entry["start"] = _duration(max(0.0, start - interval))
    entry["count"] = planned_count(rate, window)
    return entry


def lasting(kind: str, entry: dict[str, Any]) -> float:
    """Seconds a fault of this entry lasts on the plot (0 for instantaneous kinds)."""
    spec = KINDS.get(kind)
    if spec is None or not spec.window:
        return 0.0
    text = entry.get("duration", "0ms")
    return float(parse_duration(text)) if isinstance(text, str) else 0.0


def fault_window(baseline_duration: float) -> tuple[float, float]:
    """(start, length) of the faults of a point whose no-fault run took ``baseline_duration``:
    from 20 % to 60 % of it, so at least 40 % of the work is left after the last fault."""
    d = max(baseline_duration, 1e-3)
    return 0.2 * d, 0.4 * d


def fault_rate_label(rate: float) -> str:
    return "no faults" if rate == 0 else f"{rate:g}/s"
