"""Service models: what serving one request under some configuration versions costs.

A scenario or benchmark names a function ``pkg.mod:fn(configs, request, rng)
-> (latency_seconds, ok)``, or uses the built-in :class:`LatencyModel`. An
embedding application passes its own async handler instead (see
``AppHandler``); the host then measures the handler's latency on the
runtime clock.

The built-in model: a request's latency is lognormal with median
``median * prod(latency_factor of each version in force)`` and shape
``sigma``, so each version has its own lognormal latency distribution; it
fails with probability ``1 - (1 - error_rate) * prod(1 - version error_rate)``.
Because a version's effect is a factor, its *ground truth* against the
control is exact: a median (and every quantile) ratio of
``factor(experimental) / factor(control)``, and an error-rate difference
computed with the other configurations at the versions in force.
"""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Literal

import msgspec

from actors.deploy._spec import Analysis, ConfigChange
from runtime.scenario import Duration

Truth = Literal["good", "bad", "marginal"]


class Request(msgspec.Struct, frozen=True):
    """One request as a service model sees it. ``time`` is on the runtime clock."""

    id: str
    host: str
    time: float = 0.0
    payload: bytes = b""


ServiceModel = Callable[[Mapping[str, str], Request, random.Random], tuple[float, bool]]
"""``fn(configs, request, rng) -> (latency_seconds, ok)``; ``configs`` maps each
configuration name to the version in force for this request."""

AppHandler = Callable[[Mapping[str, str], Request], Awaitable[object]]
"""An embedding application's own handler: ``await handler(configs, request)``.
Its latency is measured on the runtime clock; raising counts as an error."""


class VersionModel(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One version's effect: a latency factor and an added independent failure rate."""

    latency_factor: float = 1.0
    error_rate: float = 0.0


class LatencyModel(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The built-in service model (the ``[deploy.model]`` table)."""

    median: Duration = Duration(0.04)
    sigma: float = 0.4
    error_rate: float = 0.005
    versions: dict[str, VersionModel] = msgspec.field(default_factory=dict)

    def problems(self, configs: list[ConfigChange]) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        if self.median <= 0:
            found.append(("median", "expected a positive duration"))
        if self.sigma < 0:
            found.append(("sigma", f"expected >= 0, got {self.sigma}"))
        if not 0.0 <= self.error_rate < 1.0:
            found.append(("error_rate", f"expected a rate in [0, 1), got {self.error_rate}"))
        for version, spec in self.versions.items():
            if spec.latency_factor <= 0:
                found.append((f"versions.{version}.latency_factor",
                              f"expected > 0, got {spec.latency_factor}"))
            if not 0.0 <= spec.error_rate < 1.0:
                found.append((f"versions.{version}.error_rate",
                              f"expected a rate in [0, 1), got {spec.error_rate}"))
        for change in configs:
            for version in (change.control, change.experimental):
                if version not in self.versions:
                    found.append(("versions", f"no entry for version {version!r} of "
                                  f"configuration {change.name!r} (add {version} = {{}})"))
        return found

    def _version(self, version: str) -> VersionModel:
        return self.versions.get(version) or VersionModel()

    def error_probability(self, configs: Mapping[str, str]) -> float:
        ok = 1.0 - self.error_rate
        for version in configs.values():
            ok *= 1.0 - self._version(version).error_rate
        return 1.0 - ok

    def __call__(self, configs: Mapping[str, str], request: Request,
                 rng: random.Random) -> tuple[float, bool]:
        factor = 1.0
        ok = rng.random() >= self.error_rate
        for version in configs.values():
            spec = self.versions.get(version)
            if spec is not None:
                factor *= spec.latency_factor
                if spec.error_rate and rng.random() < spec.error_rate:
                    ok = False
        latency = self.median * factor * math.exp(self.sigma * rng.gauss(0.0, 1.0))
        return latency, ok

    def truth(self, configs: list[ConfigChange], index: int, policy: Analysis) -> Truth:
        """Is ``configs[index]``'s experimental version good, bad or marginal?

        Judged on the critical metrics, with the earlier configurations at
        their experimental versions (that is what was approved before this
        experiment could run) and the later ones at control: ``bad`` is worse
        than the control by more than the tolerance, ``good`` is no worse at
        all, ``marginal`` (worse, within the tolerance) may go either way.
        """
        change = configs[index]
        context = {c.name: c.experimental if i < index else c.control
                   for i, c in enumerate(configs)}
        ratio = (self._version(change.experimental).latency_factor
                 / self._version(change.control).latency_factor)
        before = self.error_probability(context)
        after = self.error_probability({**context, change.name: change.experimental})
        increase = after - before
        critical = set(policy.critical)
        slower = "latency" in critical and ratio > 1.0 + policy.latency_tolerance + 1e-12
        failing = "errors" in critical and increase > policy.max_error_rate_increase + 1e-12
        if slower or failing:
            return "bad"
        if ("latency" not in critical or ratio <= 1.0 + 1e-12) and (
                "errors" not in critical or increase <= 1e-12):
            return "good"
        return "marginal"
