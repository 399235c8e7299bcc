"""The ``[deploy]`` scenario section and its ``[expect]`` table.

```toml
[deploy]
hosts = 6
request_rate = 120.0            # requests per second across the fleet
model = { median = "40ms", sigma = 0.4, error_rate = 0.005, versions = {
          a1 = {}, a2 = { latency_factor = 1.3 }, b1 = {}, b2 = {} } }
# or: model = "mypkg.models:checkout"   (fn(configs, request, rng) -> (latency_s, ok))

[[deploy.configs]]
name = "config_a"
control = "a1"
experimental = "a2"

[deploy.analysis]
fraction = 0.1
bake = "2m"
waves = [0.05, 0.25, 1.0]
```
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from actors.deploy._model import LatencyModel, Truth
from actors.deploy._records import Verdict
from actors.deploy._spec import Analysis, ConfigChange, config_problems
from runtime import Backoff, ScenarioError
from runtime._callables import resolve_callable
from runtime.scenario import Duration, bound_problems


class DeployConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How the fleet is laid out, loaded and judged. Durations are seconds."""

    configs: Annotated[list[ConfigChange], Meta(max_length=100)]
    name: str = "deploy"
    hosts: Annotated[int, Meta(ge=1, le=1000)] = 6
    request_rate: Annotated[float, Meta(gt=0, le=100_000)] = 120.0
    model: LatencyModel | str = msgspec.field(default_factory=LatencyModel)
    analysis: Analysis = msgspec.field(default_factory=Analysis)
    tick: Duration = Duration(0.5)
    report_interval: Duration = Duration(5.0)
    apply_interval: Duration = Duration(0.5)
    max_restarts: Annotated[int, Meta(ge=0, le=1_000_000)] = 1000
    within: Duration = Duration(10.0)
    restart_backoff: Backoff = Backoff(min=0.01, max=1.0, jitter=0.2)

    def problems(self) -> list[tuple[str, str]]:
        """(field, message) for every value out of range or inconsistent."""
        found = bound_problems(self) + config_problems(self.configs)
        found.extend((f"analysis.{f}", m) for f, m in self.analysis.problems())
        for name in ("tick", "report_interval", "within"):
            if getattr(self, name) <= 0:
                found.append((name, "expected a positive duration"))
        if self.apply_interval < 0:
            found.append(("apply_interval", "expected a duration >= 0"))
        if not self.name or "/" in self.name or "." in self.name:
            found.append(("name", "expected a non-empty name without '/' or '.'"))
        if isinstance(self.model, LatencyModel):
            found.extend((f"model.{f}", m) for f, m in self.model.problems(self.configs))
        else:
            try:
                resolve_callable(self.model, what="service model")
            except ScenarioError as exc:
                found.append(("model", str(exc)))
        return found


class DeployExpect(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The ``[expect]`` table: which invariants to check and the floors that prove
    a scenario's faults really happened.

    ``truth`` gives the ground truth per configuration (``good``/``bad``/
    ``marginal``) for a user model, or overrides the built-in model's.
    ``verdicts`` pins the expected verdict of a configuration's experiment.
    ``faults_during`` lists stage kinds in which at least one fault (a
    restart, a silenced host or a metrics outage) must have landed.
    """

    bad_rejected: bool | None = None
    """Checked by default when every configuration's ground truth is known (the built-in
    model knows it; a user model needs ``truth``); ``true`` insists, ``false`` skips."""
    good_approved: bool | None = None
    exposure_bounded: bool = True
    ordering: bool = True
    rollback_complete: bool = True
    converged: bool = True
    rollback_within: Duration = Duration(30.0)
    exposure_tolerance: float = 0.01
    truth: dict[str, Truth] = msgspec.field(default_factory=dict)
    verdicts: dict[str, Verdict] = msgspec.field(default_factory=dict)
    outcome: Literal["", "completed", "rolled back"] = ""
    faults_during: list[Literal["experiment", "wave"]] = msgspec.field(default_factory=list)
    min_host_restarts: int = 0
    min_controller_restarts: int = 0
    min_replays: int = 0
    min_missing_data_looks: int = 0

    def problems(self, config: DeployConfig) -> list[tuple[str, str]]:
        names = {c.name for c in config.configs}
        found: list[tuple[str, str]] = []
        for table in ("truth", "verdicts"):
            for name in getattr(self, table):
                if name not in names:
                    found.append((table, f"{name!r} is not a configuration "
                                  f"(known: {', '.join(sorted(names))})"))
        if self.rollback_within <= 0:
            found.append(("rollback_within", "expected a positive duration"))
        if self.exposure_tolerance < 0:
            found.append(("exposure_tolerance", f"expected >= 0, got {self.exposure_tolerance}"))
        if isinstance(config.model, str) and (self.bad_rejected or self.good_approved):
            unknown = sorted(names - set(self.truth))
            if unknown:  # asked for explicitly: without truth there is nothing to check
                found.append(("truth", f"the model {config.model!r} has no built-in ground "
                              f"truth; give truth for {', '.join(unknown)} "
                              "(or leave bad_rejected and good_approved out: the run then "
                              "reports the verdicts without judging them)"))
        return found

    def truth_checks(self, config: DeployConfig) -> tuple[bool, bool]:
        """Whether ``bad_rejected`` and ``good_approved`` are checked in this scenario."""
        known = isinstance(config.model, LatencyModel) or all(
            c.name in self.truth for c in config.configs)
        return (known if self.bad_rejected is None else self.bad_rejected,
                known if self.good_approved is None else self.good_approved)
