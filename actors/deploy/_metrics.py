"""The metrics backend: host reports in store logs, one log per deployment step.

Hosts publish :class:`MetricsReport` entries; the controller queries a
step's log when it judges that step. Keeping the raw outcomes durable (not
in the controller's memory) is what lets a restarted controller judge the
same data instead of starting the bake over.

A **metrics outage** (the ``metrics_outage`` fault, target ``deploy.metrics``
or ``<name>.metrics``) makes every publish and query fail with
:class:`MetricsUnavailable` for the fault's ``duration``: hosts keep their
unpublished outcomes and retry, the controller gets no data and so cannot
approve. A store failure is treated the same way.
"""

from __future__ import annotations

import msgspec

from actors.deploy import _keys as keys
from actors.deploy._analysis import merge
from actors.deploy._ledger import FleetLedger
from actors.deploy._records import MetricsReport, VariantOutcomes
from runtime import Runtime, ShardlineError, StoreError
from runtime.store import Append

_decode = msgspec.msgpack.Decoder(MetricsReport).decode
_encode = msgspec.msgpack.Encoder().encode
_PAGE = 5000


class MetricsUnavailable(ShardlineError):
    """The metrics backend cannot be written or read right now."""


class StepSamples:
    """Everything reported for one step so far, merged per (host, variant)."""

    __slots__ = ("by_host", "next_seq", "upto")

    def __init__(self) -> None:
        self.next_seq = 0
        self.upto: dict[str, float] = {}
        self.by_host: dict[str, dict[str, list[VariantOutcomes]]] = {}

    def add(self, report: MetricsReport) -> None:
        self.upto[report.host] = max(report.upto, self.upto.get(report.host, report.upto))
        per_variant = self.by_host.setdefault(report.host, {})
        for variant, outcomes in report.variants.items():
            per_variant.setdefault(variant, []).append(outcomes)

    def variant(self, variant: str, hosts: set[str] | None = None) -> VariantOutcomes:
        """``variant``'s outcomes over ``hosts`` (every host when ``None``)."""
        parts = [part for host, per in self.by_host.items()
                 if hosts is None or host in hosts for part in per.get(variant, ())]
        return merge(parts)

    def reporting(self, since: float) -> set[str]:
        """Hosts whose reports cover at least up to ``since``."""
        return {host for host, upto in self.upto.items() if upto >= since}


class MetricsStore:
    """Publish and query host reports for deployment ``deployment``."""

    def __init__(self, rt: Runtime, deployment: str, name: str = "deploy.metrics",
                 ledger: FleetLedger | None = None) -> None:
        self.rt = rt
        self.ledger = ledger
        self.deployment = deployment
        self.name = name
        self.outage_until = float("-inf")
        self.outages = 0
        self.failed_calls = 0
        self._cache: dict[str, StepSamples] = {}

    def _check(self, what: str) -> None:
        now = self.rt.now()
        fault = self.rt.faults.fire("metrics_outage", self.name)
        if fault is not None:
            self.outages += 1
            self.outage_until = max(self.outage_until, now + fault.duration)
            self.rt.trace.record(now, "metrics_outage", self.name,
                                 f"until {self.outage_until:.3f}")
            if self.ledger is not None:
                self.ledger.note(self.rt.clock.wall(), "metrics_outage", self.name)
        if fault is not None or now < self.outage_until:
            self.failed_calls += 1
            raise MetricsUnavailable(f"metrics backend {self.name!r} unavailable ({what})")

    async def publish(self, reports: list[MetricsReport]) -> None:
        """Append every report to its step's log in one atomic write."""
        self._check("publish")
        ops = [Append(keys.metrics_log(self.deployment, r.step), [(r.host, _encode(r))])
               for r in reports]
        try:
            await self.rt.store.write(ops)
        except StoreError as exc:
            self.failed_calls += 1
            raise MetricsUnavailable(f"metrics backend {self.name!r}: {exc}") from exc

    async def query(self, step: str) -> StepSamples:
        """Every report of ``step`` so far (reads only what is new since the last query)."""
        self._check(f"query {step}")
        samples = self._cache.setdefault(step, StepSamples())
        log = keys.metrics_log(self.deployment, step)
        try:
            while True:
                page = await self.rt.store.read(log, samples.next_seq, _PAGE)
                for entry in page:
                    samples.add(_decode(entry.payload))
                samples.next_seq += len(page)
                if len(page) < _PAGE:
                    return samples
        except StoreError as exc:
            self.failed_calls += 1
            raise MetricsUnavailable(f"metrics backend {self.name!r}: {exc}") from exc
