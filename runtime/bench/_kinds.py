"""Fault kinds a sweep can raise, and the ``[[faults]]`` entry for one sweep point.

A sweep point sets one kind's *rate* (faults per second of the runtime
clock) inside the point's *fault window*: the kind fires every ``1/rate``
seconds from the window's start, ``round(rate * window)`` times (at least
once). Where a fault lands comes from, in order: the user's scenario (its
first ``[[faults]]`` entry of that kind: target, duration, delay, all), else
the system's ``bench_fault_targets`` (the kind, or ``"actors"`` for an actor
kind), else the kind's default target here. Durations and delays not given
by the scenario are this table's.

Node faults (``kill_node``, ``pause_node``, ``partition``) run when the
scenario runs across nodes (``[scenario] nodes = N``, e.g.
``scenarios/deploy_node_kill.toml``); for any other scenario the sweep
refuses them up front.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from runtime._faults import ACTOR_FAULT_KINDS
from runtime.scenario import parse_duration


class FaultKind(msgspec.Struct, frozen=True):
    """How a sweep aims one fault kind; ``params`` are scenario-file fields."""

    name: str
    default_target: str = "*"
    params: dict[str, str] = msgspec.field(default_factory=dict)
    window: bool = False
    """The kind lasts ``duration`` (a pause, an outage): its plot shading covers it."""
    node: bool = False
    """A node fault: it needs the cluster."""

    def target_in(self, system_targets: Mapping[str, str]) -> str:
        if self.name in system_targets:
            return system_targets[self.name]
        if self.name in ACTOR_FAULT_KINDS and "actors" in system_targets:
            return system_targets["actors"]
        return self.default_target


KINDS: dict[str, FaultKind] = {k.name: k for k in (
    FaultKind("crash"),
    FaultKind("pause", params={"duration": "300ms"}, window=True),
    FaultKind("delay", params={"delay": "50ms"}),
    FaultKind("store_error", "store.*"),
    FaultKind("destination_error"),
    FaultKind("lease_expiry"),
    FaultKind("slow", params={"delay": "200ms"}),
    FaultKind("poison"),
    FaultKind("stop_reporting", params={"duration": "1s"}, window=True),
    FaultKind("metrics_outage", params={"duration": "1s"}, window=True),
    FaultKind("kill_node", "node-*", node=True),
    FaultKind("pause_node", "node-*", {"duration": "1s"}, window=True, node=True),
    FaultKind("partition", "node-*", {"duration": "1s"}, window=True, node=True),
)}


def planned_count(rate: float, window: float) -> int:
    """Faults a point plans: ``rate`` per second over ``window`` seconds, at least one."""
    return max(1, round(rate * window))


def _duration(seconds: float) -> str:
    return f"{max(seconds, 0.0) * 1000:.3f}ms"


def fault_entry(kind: str, system_targets: Mapping[str, str], rate: float, start: float,
                window: float, user: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``[[faults]]`` table for ``kind`` at ``rate`` within ``[start, start + window]``."""
    spec = KINDS.get(kind, FaultKind(kind))
    entry: dict[str, Any] = {"kind": kind, "target": spec.target_in(system_targets),
                             **spec.params}
    mine = next((f for f in user if f.get("kind") == kind), None)
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
