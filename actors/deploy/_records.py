"""Durable records of a deployment: assignments, metric reports, evidence, state.

All are frozen msgspec structs so they encode to MessagePack for the store
and to JSON for the report. Times named ``*_at`` in a :class:`StageResult`
and ``Evidence.at`` are seconds since the deployment was created; the
deadlines in :class:`DeploymentState` (``created_at``, ``step_started_at``,
``bake_until``, ``next_check``) and ``upto`` in a report are absolute times
on the store clock (``rt.clock.wall()``), so they mean the same after a
controller restart.
"""

from __future__ import annotations

from typing import Literal

import msgspec

Verdict = Literal["approved", "rejected", "inconclusive"]
StageKind = Literal["experiment", "wave"]
Phase = Literal["applying", "baking", "finished"]
Action = Literal["step", "rollback", "finalize"]


class Assignment(msgspec.Struct, frozen=True, tag=True):
    """The versions a host runs, as of one revision of the deployment.

    A request is in the ``experiment`` variant with probability ``fraction``
    (decided by ``variant_for(request_id, experiment_id, fraction)``) and
    then runs ``control`` overridden by ``experiment``; otherwise it runs
    ``control``. Its outcome is counted toward the deployment step ``step``.
    Hosts ignore an assignment whose ``revision`` is not above their own.
    """

    revision: int
    step: str
    control: dict[str, str]
    experiment: dict[str, str] = msgspec.field(default_factory=dict)
    fraction: float = 0.0
    experiment_id: str = ""

    def versions(self, variant: str) -> dict[str, str]:
        """The configuration -> version map in force for a request of ``variant``."""
        if variant == "experiment" and self.experiment:
            return {**self.control, **self.experiment}
        return dict(self.control)


class VariantOutcomes(msgspec.Struct, frozen=True):
    """What one variant's requests did: how many, how many failed, latencies of the rest."""

    requests: int = 0
    errors: int = 0
    latencies: list[float] = msgspec.field(default_factory=list)


class MetricsReport(msgspec.Struct, frozen=True, tag=True):
    """One host's outcomes for one step since its previous report.

    ``upto`` is the store-clock time the report covers through; a report with
    no requests still proves the host is alive and reporting.
    """

    host: str
    step: str
    revision: int
    upto: float
    variants: dict[str, VariantOutcomes]


class MetricEvidence(msgspec.Struct, frozen=True):
    """One metric's comparison: the test, sizes, statistic, p-value and effect.

    ``effect`` is the relative change of the median latency (``0.3`` = 30 %
    slower) for ``latency`` and the absolute change of the error rate for
    ``errors``; ``allowed`` is the tolerance it is compared with. ``failed``
    means significant (``p_value`` below the look's ``Evidence.alpha``) *and*
    beyond ``allowed``.
    ``statistic``/``p_value`` are ``None`` when the test could not be run.
    """

    metric: str
    test: str
    critical: bool
    n_control: int
    n_experiment: int
    control: float | None
    experiment: float | None
    effect: float | None
    allowed: float
    statistic: float | None
    p_value: float | None
    significant: bool
    failed: bool
    extra: dict[str, float] = msgspec.field(default_factory=dict)


class Evidence(msgspec.Struct, frozen=True):
    """Everything one look at a step saw; ``missing`` says why data was not enough.

    ``alpha`` is the level every metric was tested at in this look (the
    step's ``1 - confidence`` after the look and metric correction).
    """

    look: int
    at: float
    final: bool
    alpha: float
    n_control: int
    n_experiment: int
    hosts: int
    hosts_reporting: int
    coverage: float
    baseline: str
    missing: str
    reason: str
    metrics: list[MetricEvidence]


class StageResult(msgspec.Struct, frozen=True):
    """One stage run (an experiment or a promotion wave) and its verdict."""

    stage: int
    kind: StageKind
    config: str
    version: str
    control_version: str
    verdict: Verdict
    evidence: Evidence
    started_at: float
    decided_at: float
    bake: float
    looks: int
    missing_data_looks: int
    extensions: int
    fraction: float
    hosts: list[str]
    revision: int
    rollback_revision: int | None = None
    rolled_back_at: float | None = None


class DeploymentState(msgspec.Struct, frozen=True, tag=True):
    """The controller's durable state, replaced by compare-and-set at every transition.

    ``phase = "applying"`` is the *pending step*: ``targets`` (revision
    ``revision``) must reach every host, then ``action`` decides what
    follows: ``step`` bakes plan step ``step``, ``rollback`` and ``finalize``
    finish. A controller that restarts in ``applying`` replays the whole
    application (idempotent); in ``baking`` it keeps the stored bake deadline.
    """

    deployment: str
    hosts: list[str]
    order: list[str]
    created_at: float
    step: int
    phase: Phase
    action: Action
    revision: int
    targets: dict[str, Assignment]
    approved: dict[str, str]
    results: list[StageResult] = msgspec.field(default_factory=list)
    step_started_at: float = 0.0
    bake_until: float = 0.0
    next_check: float = 0.0
    looks: int = 0
    missing_data_looks: int = 0
    extensions: int = 0
    outcome: str = ""
    replays: int = 0
