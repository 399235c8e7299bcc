"""What the fleet actually served: the evidence the invariants are checked against.

Hosts add to the ledger as they serve, so it counts every request, including
outcomes a crash or a silent host never reported to the metrics backend.
It lives outside the actors (like a test recorder), so host restarts do not
reset it; it is not durable and not used by any decision.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Iterable, Mapping

import msgspec

from runtime.scenario import Observation


class Applied(msgspec.Struct, frozen=True, tag=True):
    """A host started serving ``revision`` at store-clock ``time`` (``how``: assign or recover)."""

    time: float
    host: str
    revision: int
    step: str
    how: str


class FleetLedger:
    """Requests served per (step, variant) and per (configuration, version)."""

    def __init__(self) -> None:
        self.by_step: Counter[tuple[str, str]] = Counter()
        self.by_version: Counter[tuple[str, str]] = Counter()
        self.first_served: dict[tuple[str, str], float] = {}
        self.last_served: dict[tuple[str, str], float] = {}
        self.applied: list[Applied] = []
        self.requests = 0
        self.errors = 0
        self.unreported = 0
        self.silenced_reports = 0
        self.events: list[tuple[float, str, str]] = []
        self.latencies: array[float] = array("d")
        """Seconds of every request served without error, in the order hosts served them
        (append-only: the sampler's latency column). Kept where hosts serve: a ledger
        replayed from nodes' journals (``_ledger_log``) holds none."""
        self._started: set[str] = set()

    def note(self, time: float, kind: str, target: str) -> None:
        """A fault's effect seen by the system (a restart, a silenced host, an outage)."""
        self.events.append((time, kind, target))

    def started(self, time: float, actor: str) -> None:
        """An actor instance started; every start after the first is a restart."""
        if actor in self._started:
            self.note(time, "restart", actor)
        self._started.add(actor)

    def lost(self, requests: int, *, silenced_report: bool = False) -> None:
        """Requests served but never reported (lost with a crash, or by a silenced host)."""
        self.unreported += requests
        self.silenced_reports += silenced_report

    def restarts(self, prefix: str = "") -> int:
        return sum(1 for _, kind, who in self.events
                   if kind == "restart" and who.startswith(prefix))

    def served(self, step: str, variant: str, configs: Mapping[str, str], requests: int,
               errors: int, time: float) -> None:
        if requests <= 0:
            return
        self.requests += requests
        self.errors += errors
        self.by_step[(step, variant)] += requests
        for item in configs.items():
            self.by_version[item] += requests
            self.first_served.setdefault(item, time)
            self.last_served[item] = time

    def measured(self, latencies: Iterable[float]) -> None:
        """Latencies of requests served without error (``served`` counts them)."""
        self.latencies.extend(latencies)

    def applied_revision(self, time: float, host: str, revision: int, step: str,
                         how: str) -> None:
        self.applied.append(Applied(time, host, revision, step, how))

    def step_requests(self, step: str) -> tuple[int, int]:
        """(all requests, experiment-variant requests) served under ``step``."""
        total = sum(n for (s, _), n in self.by_step.items() if s == step)
        return total, self.by_step.get((step, "experiment"), 0)

    def observation(self) -> Observation:
        """The probe a sampler reads: requests served by the fleet and the latency of each
        one served without error (what the deployment's analysis judges)."""
        return Observation(completed=self.requests, latencies=self.latencies,
                           unit="requests served")
