"""Judging an experiment against its control: Kayenta's classifier, made explicit.

Latency: a one-sided Mann-Whitney U test (scipy) of "experiment latencies
are stochastically larger than control latencies". As in Kayenta's
``MannWhitneyClassifier``, significance alone does not fail a metric: the
experiment fails only if the test is significant at ``confidence`` **and**
its median is slower than the control's by more than ``latency_tolerance``
(relative). A tiny but real slowdown within the tolerance passes; a large
observed slowdown that is not significant is not evidence either way.

Errors: a one-sided two-proportion test of "the experiment's error rate is
higher"; it fails if significant **and** the observed increase exceeds
``max_error_rate_increase`` (absolute, 0.01 = one percentage point). The
p-value is always Fisher's exact test, not the pooled z-test's normal
approximation: the controller tests at Bonferroni-corrected levels around
1e-3 to 1e-4, and that far into the tail the approximation understates p
several-fold even with dozens of errors (54 errors in 13053 vs 22 in 2310
gives p = 0.00034 by z, 0.0014 exactly; 2 in 1504 vs 8 in 746 gives 0.0008
by z, 0.003 exactly), which would reject harmless changes more often than
the level says. The z statistic is still reported.

A verdict needs data: fewer than ``min_samples`` requests on either side is
no verdict at all; approval also needs the bake to be over and enough hosts
reporting. A failed critical metric rejects at any look (stopping a bad
change early limits exposure); non-critical metrics are reported only.
Because every look may reject on every critical metric, the controller
tests each metric at each look at a corrected level (``Analysis.look_alpha``:
``1 - confidence`` split over every planned look of the rollout and every
critical metric), not at ``1 - confidence``; ``Evidence.alpha`` records it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
from scipy.stats import fisher_exact, mannwhitneyu  # type: ignore[import-untyped]

from actors.deploy._records import Evidence, MetricEvidence, VariantOutcomes
from actors.deploy._spec import Analysis

Judgement = Literal["approved", "rejected", "inconclusive", "pending"]


def compare_latency(
    control: Sequence[float], experiment: Sequence[float], *, confidence: float,
    tolerance: float, critical: bool = True,
) -> MetricEvidence:
    """Mann-Whitney U of experiment > control, with the median slowdown as effect size.

    ``extra["cles"]`` is the common-language effect size U / (n_e * n_c): the
    probability that a random experiment request is slower than a random
    control request (0.5 = no difference).
    """
    n_c, n_e = len(control), len(experiment)
    if n_c < 2 or n_e < 2:
        return MetricEvidence("latency", "mann-whitney-u", critical, n_c, n_e, None, None,
                              None, tolerance, None, None, False, False)
    ctl = np.asarray(control, dtype=float)
    exp = np.asarray(experiment, dtype=float)
    result = mannwhitneyu(exp, ctl, alternative="greater", method="asymptotic")
    u, p = float(result.statistic), float(result.pvalue)
    med_c, med_e = float(np.median(ctl)), float(np.median(exp))
    effect = med_e / med_c - 1.0 if med_c > 0 else math.inf
    significant = p < 1.0 - confidence
    failed = significant and effect > tolerance
    return MetricEvidence(
        "latency", "mann-whitney-u", critical, n_c, n_e, med_c, med_e, effect, tolerance,
        u, p, significant, failed,
        extra={"cles": u / (n_e * n_c), "mean_control": float(ctl.mean()),
               "mean_experiment": float(exp.mean())},
    )


def compare_errors(
    control_errors: int, control_requests: int, experiment_errors: int,
    experiment_requests: int, *, confidence: float, max_increase: float,
    critical: bool = True,
) -> MetricEvidence:
    """One-sided test of experiment error rate > control error rate.

    The p-value is Fisher's exact test (statistic: the odds ratio); the
    pooled two-proportion z is reported as ``extra["z"]``.
    """
    n_c, n_e = control_requests, experiment_requests
    if n_c < 1 or n_e < 1:
        return MetricEvidence("errors", "fisher-exact", critical, n_c, n_e, None, None,
                              None, max_increase, None, None, False, False)
    p_c, p_e = control_errors / n_c, experiment_errors / n_e
    errors = control_errors + experiment_errors
    if errors == 0 or errors == n_c + n_e:  # nothing distinguishes the variants
        statistic, p, z = 1.0, 1.0, 0.0
    else:
        table = [[experiment_errors, n_e - experiment_errors],
                 [control_errors, n_c - control_errors]]
        odds, p_value = fisher_exact(table, alternative="greater")
        statistic, p = float(odds), float(p_value)
        pooled = errors / (n_c + n_e)
        z = (p_e - p_c) / math.sqrt(pooled * (1.0 - pooled) * (1.0 / n_c + 1.0 / n_e))
    effect = p_e - p_c
    significant = p < 1.0 - confidence
    failed = significant and effect > max_increase
    return MetricEvidence("errors", "fisher-exact", critical, n_c, n_e, p_c, p_e, effect,
                          max_increase, statistic, p, significant, failed, extra={"z": z})


def judge(
    control: VariantOutcomes, experiment: VariantOutcomes, policy: Analysis, *,
    final: bool, look: int = 0, at: float = 0.0, hosts: int = 0, hosts_reporting: int = 0,
    baseline: str = "concurrent", alpha: float | None = None,
) -> tuple[Judgement, Evidence]:
    """One look at a step: ``rejected`` any time, ``approved`` only when ``final``.

    ``pending`` means keep baking; ``inconclusive`` (only when ``final``) means
    the bake ended without the data an approval needs. ``alpha`` is the
    level each metric is tested at in this look (default ``1 -
    policy.confidence``; the controller passes ``policy.look_alpha(waves)``).
    """
    level = policy.alpha if alpha is None else alpha
    coverage = hosts_reporting / hosts if hosts else 1.0
    n_c, n_e = control.requests, experiment.requests
    metrics: list[MetricEvidence] = []
    missing = ""
    collecting = ""
    if n_c < policy.min_samples or n_e < policy.min_samples:
        collecting = (f"not enough samples: control {n_c}, experiment {n_e} "
                      f"(need {policy.min_samples} each)")
        if final:  # only a shortfall at the end of the bake is missing data
            missing = collecting
    else:
        critical = set(policy.critical)
        metrics.append(compare_latency(
            control.latencies, experiment.latencies, confidence=1.0 - level,
            tolerance=policy.latency_tolerance, critical="latency" in critical))
        metrics.append(compare_errors(
            control.errors, n_c, experiment.errors, n_e, confidence=1.0 - level,
            max_increase=policy.max_error_rate_increase, critical="errors" in critical))

    def evidence(reason: str) -> Evidence:
        return Evidence(look, at, final, level, n_c, n_e, hosts, hosts_reporting, coverage,
                        baseline, missing, reason, metrics)

    failed = [m.metric for m in metrics if m.critical and m.failed]
    if failed:
        return "rejected", evidence(f"critical metric(s) failed: {', '.join(failed)}")
    untestable = [m.metric for m in metrics if m.critical and m.p_value is None]
    if untestable and not missing:
        missing = f"no usable data for critical metric(s): {', '.join(untestable)}"
    if not missing and not collecting and coverage < policy.min_coverage:
        missing = (f"hosts not reporting: {hosts - hosts_reporting} of {hosts} silent for more "
                   f"than {policy.report_timeout:g} s (need coverage {policy.min_coverage:g})")
    if not final:
        return "pending", evidence(missing or collecting or "baking")
    if missing:
        return "inconclusive", evidence(missing)
    return "approved", evidence("every critical metric within tolerance")


def merge(parts: Sequence[VariantOutcomes]) -> VariantOutcomes:
    """One variant's outcomes from several reports."""
    latencies: list[float] = []
    for part in parts:
        latencies.extend(part.latencies)
    return VariantOutcomes(sum(p.requests for p in parts), sum(p.errors for p in parts), latencies)
