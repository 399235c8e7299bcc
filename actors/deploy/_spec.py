"""What a deployment is asked to do: the configuration changes and the analysis policy.

These structs are both the ``[deploy]`` scenario tables and the embedding
configuration. Durations are seconds (``runtime.scenario.Duration`` in TOML,
plain floats from Python).

The policy, as the controller applies it:

- An **experiment** sends ``fraction`` of the requests (chosen by a stable
  hash of the request id, see ``variant_for``) to the experimental version
  and compares them with the rest (the control) for ``bake`` seconds,
  looking every ``check_interval``. A critical metric that is significantly
  worse (at ``confidence``) by more than its tolerance rejects at any look;
  approval is only given at the end of the bake, with at least
  ``min_samples`` requests on each side and at least ``min_coverage`` of the
  hosts having reported within ``report_timeout``.
- Every look may reject on every critical metric, so each of those tests
  runs at a corrected level (see ``Analysis.look_alpha``): the chance that
  a harmless change is rejected anywhere in its rollout, on any metric,
  stays below ``1 - confidence``.
- Missing data is never an approval: it is ``inconclusive``, which extends
  the bake by ``extension`` (up to ``max_extensions`` times) when
  ``on_inconclusive = "extend"``, and then, or at once with ``"reject"``,
  rolls the change back with the verdict ``inconclusive``.
- An approved version becomes the control in **waves**: a first host, then
  ``ceil(w * hosts)`` hosts for each ``w`` in ``waves`` (counts that do not
  grow are skipped), each baked ``wave_bake`` (default ``bake``) and judged
  like an experiment. A regression in a wave rolls the promotion back on
  every host and ends the deployment.
"""

from __future__ import annotations

import itertools
import math
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from runtime.scenario import Duration, bound_problems

Metric = Literal["latency", "errors"]
METRICS: tuple[Metric, ...] = ("latency", "errors")


class ConfigChange(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One configuration to change: its name, the version in force, the candidate."""

    name: str
    control: str
    experimental: str


class Analysis(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How experiments and promotion waves are judged (the ``[deploy.analysis]`` table)."""

    fraction: float = 0.1
    bake: Duration = Duration(60.0)
    min_samples: Annotated[int, Meta(ge=1, le=10_000_000)] = 200
    confidence: float = 0.98
    latency_tolerance: float = 0.1
    max_error_rate_increase: float = 0.01
    waves: Annotated[list[float], Meta(max_length=100)] = msgspec.field(
        default_factory=lambda: [0.05, 0.25, 1.0])
    wave_bake: Duration | None = None
    check_interval: Duration = Duration(15.0)
    critical: list[Metric] = msgspec.field(default_factory=lambda: ["latency", "errors"])
    on_inconclusive: Literal["extend", "reject"] = "extend"
    extension: Duration = Duration(30.0)
    max_extensions: Annotated[int, Meta(ge=0, le=100)] = 3
    min_coverage: float = 1.0
    report_timeout: Duration = Duration(15.0)
    look_correction: Literal["bonferroni", "none"] = "bonferroni"

    @property
    def alpha(self) -> float:
        """The significance level of a whole step: ``1 - confidence``."""
        return 1.0 - self.confidence

    def looks(self, kind: str) -> int:
        """How many looks a step of ``kind`` plans: one per ``check_interval`` of its bake."""
        return max(1, math.ceil(self.bake_for(kind) / self.check_interval - 1e-9))

    def look_alpha(self, wave_count: int) -> float:
        """The level one metric is tested at in one look, for ``wave_count`` waves.

        A change is looked at every ``check_interval`` of its experiment and
        of each promotion wave, each look tests every critical metric, and
        the first significant failure rejects the change. Testing each of
        those at ``alpha`` would reject a harmless change far more often
        than ``alpha`` (the peeking problem, once per look, per stage and
        per metric), so by default every planned (look, critical metric)
        pair of the change's whole rollout tests at ``alpha / (looks *
        critical metrics)`` (Bonferroni): by the union bound, the chance
        that a harmless change is rejected anywhere in its rollout stays
        below ``1 - confidence``. Looks added by a bake extension, or
        repeated after a controller restart, use the same level (they only
        happen when data was missing or a decision was lost).
        ``look_correction = "none"`` tests every metric at every look at
        ``alpha`` (Kayenta's single-analysis behaviour).
        """
        if self.look_correction == "none":
            return self.alpha
        looks = self.looks("experiment") + wave_count * self.looks("wave")
        return self.alpha / (looks * len(self.critical))

    def bake_for(self, kind: str) -> float:
        if kind == "wave" and self.wave_bake is not None:
            return float(self.wave_bake)
        return float(self.bake)

    def problems(self) -> list[tuple[str, str]]:
        """(field, message) for every value out of range."""
        found = bound_problems(self)
        if not 0.0 < self.fraction < 1.0:
            found.append(("fraction", f"expected a fraction in (0, 1), got {self.fraction}"))
        if not 0.5 <= self.confidence < 1.0:
            found.append(("confidence", f"expected a value in [0.5, 1), got {self.confidence}"))
        for name in ("bake", "check_interval", "report_timeout"):
            if getattr(self, name) <= 0:
                found.append((name, "expected a positive duration"))
        if self.wave_bake is not None and self.wave_bake <= 0:
            found.append(("wave_bake", "expected a positive duration"))
        if self.extension <= 0 and self.max_extensions > 0:
            found.append(("extension", "expected a positive duration"))
        if self.latency_tolerance < 0:
            found.append(("latency_tolerance", f"expected >= 0, got {self.latency_tolerance}"))
        if not 0.0 <= self.max_error_rate_increase < 1.0:
            found.append(("max_error_rate_increase",
                          f"expected a rate in [0, 1), got {self.max_error_rate_increase}"))
        if not 0.0 < self.min_coverage <= 1.0:
            found.append(("min_coverage",
                          f"expected a fraction in (0, 1], got {self.min_coverage}"))
        if not self.critical:
            found.append(("critical", "expected at least one critical metric"))
        elif len(set(self.critical)) != len(self.critical):
            found.append(("critical", f"duplicate metric in {self.critical}"))
        found.extend(_wave_problems(self.waves))
        return found


def _wave_problems(waves: list[float]) -> list[tuple[str, str]]:
    if not waves:
        return [("waves", "expected at least one wave, ending with 1.0")]
    if any(not 0.0 < w <= 1.0 for w in waves):
        return [("waves", f"expected fractions in (0, 1], got {waves}")]
    if any(b <= a for a, b in itertools.pairwise(waves)):
        return [("waves", f"expected strictly increasing fractions, got {waves}")]
    if waves[-1] != 1.0:
        return [("waves", f"the last wave must be 1.0 (every host), got {waves[-1]}")]
    return []


def wave_sizes(waves: list[float], hosts: int) -> list[int]:
    """Cumulative host counts of the promotion waves: a first host, then each fraction.

    ``[0.05, 0.25, 1.0]`` on 8 hosts is ``[1, 2, 8]`` (5 % of 8 rounds up to the
    first host, which is already promoted, so that wave is skipped).
    """
    sizes = [1]
    for w in waves:
        n = min(hosts, max(1, math.ceil(w * hosts - 1e-9)))
        if n > sizes[-1]:
            sizes.append(n)
    return sizes


def config_problems(configs: list[ConfigChange]) -> list[tuple[str, str]]:
    """(field, message) for configuration changes that cannot be run."""
    found: list[tuple[str, str]] = []
    if not configs:
        found.append(("configs", "expected at least one [[deploy.configs]] entry"))
    seen: set[str] = set()
    for index, change in enumerate(configs):
        where = f"configs[{index}]"
        if not change.name or "/" in change.name:
            found.append((f"{where}.name", "expected a non-empty name without '/'"))
        if change.name in seen:
            found.append((f"{where}.name", f"duplicate configuration {change.name!r}"))
        seen.add(change.name)
        if not change.control or not change.experimental:
            found.append((where, "expected non-empty control and experimental versions"))
        elif change.control == change.experimental:
            found.append((f"{where}.experimental",
                          f"equals the control version {change.control!r}"))
    return found


class DeploymentSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One deployment as the controller runs it (the embedding configuration).

    ``deployment`` names its store namespace: a controller started with the
    same id on the same store resumes it. ``hosts`` are the host actors'
    names, in the order the fleet spawns them. ``report_interval`` is how
    often hosts publish their outcomes; ``apply_interval`` spaces the
    controller's assignment of a new revision host by host, as a real
    rollout takes time per host.
    """

    deployment: str
    hosts: list[str]
    configs: list[ConfigChange]
    analysis: Analysis = Analysis()
    report_interval: float = 5.0
    apply_interval: float = 0.5

    def problems(self) -> list[tuple[str, str]]:
        found = config_problems(self.configs)
        found.extend((f"analysis.{field}", message) for field, message in self.analysis.problems())
        if not self.deployment or "/" in self.deployment:
            found.append(("deployment", "expected a non-empty id without '/'"))
        if not self.hosts:
            found.append(("hosts", "expected at least one host"))
        elif len(set(self.hosts)) != len(self.hosts):
            found.append(("hosts", "host names must be unique"))
        if self.report_interval <= 0:
            found.append(("report_interval", "expected a positive duration"))
        if self.apply_interval < 0:
            found.append(("apply_interval", "expected a duration >= 0"))
        return found
