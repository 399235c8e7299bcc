"""The deploy analysis on its own: the tests, the verdict rules, the policy checks.

The property test is the safety rule of the whole system: whatever the data,
``judge`` approves only at the end of the bake, with enough samples on both
sides, enough hosts reporting and no critical metric failed.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm  # type: ignore[import-untyped]

from actors.deploy import (
    Analysis,
    VariantOutcomes,
    compare_errors,
    compare_latency,
    judge,
    wave_sizes,
)


def lognormal(n: int, median: float, seed: int, sigma: float = 0.4) -> list[float]:
    rng = random.Random(seed)
    return [median * rng.lognormvariate(0.0, sigma) for _ in range(n)]


def outcomes(n: int, errors: int, median: float, seed: int) -> VariantOutcomes:
    return VariantOutcomes(n, errors, lognormal(n - errors, median, seed))


def test_latency_regression_beyond_tolerance_fails() -> None:
    m = compare_latency(lognormal(2000, 0.04, 1), lognormal(500, 0.052, 2),
                        confidence=0.98, tolerance=0.1)
    assert m.significant and m.failed
    assert m.test == "mann-whitney-u" and m.n_control == 2000 and m.n_experiment == 500
    assert m.p_value is not None and m.p_value < 1e-6
    assert m.effect is not None and 0.2 < m.effect < 0.4
    assert m.extra["cles"] > 0.6


def test_significant_slowdown_within_tolerance_passes() -> None:
    """Kayenta's rule: significance alone does not fail; the effect must exceed the tolerance."""
    m = compare_latency(lognormal(20000, 0.04, 3), lognormal(20000, 0.0412, 4),
                        confidence=0.98, tolerance=0.1)
    assert m.significant and not m.failed
    assert m.effect is not None and 0.0 < m.effect < 0.1


def test_same_latency_passes_and_faster_is_never_significant() -> None:
    same = compare_latency(lognormal(1000, 0.04, 5), lognormal(1000, 0.04, 6),
                           confidence=0.98, tolerance=0.0)
    assert not same.failed
    faster = compare_latency(lognormal(1000, 0.04, 7), lognormal(1000, 0.03, 8),
                             confidence=0.98, tolerance=0.0)
    assert faster.p_value is not None and faster.p_value > 0.5 and not faster.significant


def test_latency_without_data_is_untestable() -> None:
    m = compare_latency([0.04], [], confidence=0.98, tolerance=0.1)
    assert m.p_value is None and not m.failed


def test_error_regression_fails_with_an_exact_p_value_and_reports_z() -> None:
    m = compare_errors(50, 10000, 60, 1000, confidence=0.98, max_increase=0.01)
    assert m.test == "fisher-exact"
    assert m.failed and m.effect == pytest.approx(0.055)
    assert m.p_value is not None and m.p_value < 1e-20
    assert m.extra["z"] > 5


@pytest.mark.parametrize(("control", "experiment", "z_p", "exact_p"), [
    ((2, 1504), (8, 746), 0.0008, 0.0032),        # few errors
    ((54, 13053), (22, 2310), 0.00034, 0.0014),   # dozens of errors, still far in the tail
])
def test_error_p_value_is_exact_where_the_z_test_understates_it(
        control: tuple[int, int], experiment: tuple[int, int], z_p: float,
        exact_p: float) -> None:
    """At a corrected level the controller uses (1e-3), the z-test's normal
    approximation would call these significant; the exact test does not."""
    m = compare_errors(*control, *experiment, confidence=1.0 - 0.001, max_increase=0.005)
    assert m.p_value == pytest.approx(exact_p, rel=0.05)
    assert norm.sf(m.extra["z"]) == pytest.approx(z_p, rel=0.1)
    assert norm.sf(m.extra["z"]) < 0.001 < m.p_value
    assert not m.significant and not m.failed


def test_increase_within_allowance_passes_and_no_errors_is_no_evidence() -> None:
    within = compare_errors(500, 100000, 600, 100000, confidence=0.98, max_increase=0.01)
    assert within.significant and not within.failed
    none = compare_errors(0, 1000, 0, 1000, confidence=0.98, max_increase=0.0)
    assert none.p_value == 1.0 and not none.failed


POLICY = Analysis(min_samples=300, latency_tolerance=0.1, max_error_rate_increase=0.01)


def test_judge_rejects_early_and_approves_only_at_the_end() -> None:
    control = outcomes(5000, 25, 0.04, 10)
    bad = outcomes(600, 3, 0.06, 11)
    good = outcomes(600, 3, 0.04, 12)
    verdict, evidence = judge(control, bad, POLICY, final=False, hosts=6, hosts_reporting=6)
    assert verdict == "rejected" and "latency" in evidence.reason
    assert judge(control, good, POLICY, final=False, hosts=6, hosts_reporting=6)[0] == "pending"
    verdict, evidence = judge(control, good, POLICY, final=True, hosts=6, hosts_reporting=6)
    assert verdict == "approved"
    assert [m.metric for m in evidence.metrics] == ["latency", "errors"]
    assert evidence.n_control == 5000 and evidence.n_experiment == 600


def test_judge_never_approves_on_missing_data() -> None:
    control = outcomes(5000, 25, 0.04, 13)
    few = outcomes(299, 1, 0.04, 14)
    verdict, evidence = judge(control, few, POLICY, final=True, hosts=6, hosts_reporting=6)
    assert verdict == "inconclusive" and "not enough samples" in evidence.missing
    enough = outcomes(600, 3, 0.04, 15)
    verdict, evidence = judge(control, enough, POLICY, final=True, hosts=6, hosts_reporting=5)
    assert verdict == "inconclusive" and "hosts not reporting" in evidence.missing
    # a shortfall at an interim look is not missing data, just not done yet
    verdict, evidence = judge(control, few, POLICY, final=False, hosts=6, hosts_reporting=6)
    assert verdict == "pending" and evidence.missing == ""


def test_non_critical_metric_is_reported_but_does_not_reject() -> None:
    policy = Analysis(min_samples=300, critical=["latency"])
    control = outcomes(5000, 25, 0.04, 16)
    failing = outcomes(1000, 100, 0.04, 17)
    verdict, evidence = judge(control, failing, policy, final=True, hosts=1, hosts_reporting=1)
    errors = next(m for m in evidence.metrics if m.metric == "errors")
    assert errors.failed and not errors.critical and verdict == "approved"


@settings(max_examples=200, deadline=None)
@given(n_c=st.integers(0, 800), n_e=st.integers(0, 800), err_c=st.floats(0, 0.2),
       err_e=st.floats(0, 0.2), slow=st.floats(0.5, 2.0), final=st.booleans(),
       hosts=st.integers(1, 8), silent=st.integers(0, 8), seed=st.integers(0, 2**16))
def test_judge_approves_only_with_complete_data(n_c: int, n_e: int, err_c: float,
                                                 err_e: float, slow: float, final: bool,
                                                 hosts: int, silent: int, seed: int) -> None:
    reporting = max(0, hosts - silent)
    control = outcomes(n_c, int(n_c * err_c), 0.04, seed)
    experiment = outcomes(n_e, int(n_e * err_e), 0.04 * slow, seed + 1)
    policy = Analysis(min_samples=100, min_coverage=0.75)
    verdict, evidence = judge(control, experiment, policy, final=final, hosts=hosts,
                              hosts_reporting=reporting)
    if verdict == "approved":
        assert final and n_c >= 100 and n_e >= 100
        assert reporting / hosts >= 0.75 and evidence.missing == ""
        assert not any(m.failed for m in evidence.metrics if m.critical)
    if verdict == "rejected":  # no verdict without enough samples
        assert n_c >= 100 and n_e >= 100
    if not final:
        assert verdict in ("pending", "rejected")


def test_look_alpha_spreads_confidence_over_every_planned_look_and_metric() -> None:
    policy = Analysis(confidence=0.98, bake=120.0, wave_bake=60.0,  # type: ignore[arg-type]
                      check_interval=20.0)  # type: ignore[arg-type]
    assert policy.looks("experiment") == 6 and policy.looks("wave") == 3
    assert policy.look_alpha(2) == pytest.approx(0.02 / (12 * 2))
    latency_only = Analysis(confidence=0.98, bake=120.0, wave_bake=60.0,  # type: ignore[arg-type]
                            check_interval=20.0, critical=["latency"])  # type: ignore[arg-type]
    assert latency_only.look_alpha(2) == pytest.approx(0.02 / 12)
    none = Analysis(confidence=0.98, look_correction="none")
    assert none.look_alpha(3) == pytest.approx(0.02)


@pytest.mark.parametrize("critical", [["latency"], ["errors"], ["latency", "errors"]])
@pytest.mark.parametrize(("bake", "wave_bake", "interval", "waves", "hosts"), [
    (120.0, 60.0, 20.0, [0.25, 1.0], 6),
    (60.0, None, 15.0, [0.05, 0.25, 1.0], 8),
    (45.0, 30.0, 20.0, [1.0], 1),
])
def test_every_test_of_a_rollout_together_stays_within_one_minus_confidence(
        critical: list[str], bake: float, wave_bake: float | None, interval: float,
        waves: list[float], hosts: int) -> None:
    """The union bound the controller relies on: the levels of every planned
    (stage, look, critical metric) test of one change sum to at most 1 - confidence."""
    policy = Analysis(confidence=0.98, bake=bake, wave_bake=wave_bake,  # type: ignore[arg-type]
                      check_interval=interval, waves=waves,  # type: ignore[arg-type]
                      critical=critical)  # type: ignore[arg-type]
    stages = ["experiment"] + ["wave"] * len(wave_sizes(waves, hosts))
    level = policy.look_alpha(len(stages) - 1)
    total = sum(level * policy.looks(kind) * len(critical) for kind in stages)
    assert total == pytest.approx(0.02)


def test_wave_sizes() -> None:
    assert wave_sizes([0.05, 0.25, 1.0], 8) == [1, 2, 8]
    assert wave_sizes([0.25, 1.0], 6) == [1, 2, 6]
    assert wave_sizes([1.0], 1) == [1]
    assert wave_sizes([0.5, 1.0], 10) == [1, 5, 10]


@pytest.mark.parametrize(("changes", "field"), [
    ({"fraction": 1.0}, "fraction"),
    ({"waves": [0.5, 0.25, 1.0]}, "waves"),
    ({"waves": [0.25, 0.5]}, "waves"),
    ({"confidence": 1.0}, "confidence"),
    ({"critical": []}, "critical"),
    ({"min_samples": 0}, "min_samples"),
    ({"min_coverage": 0.0}, "min_coverage"),
])
def test_bad_policy_is_named(changes: dict[str, object], field: str) -> None:
    policy = Analysis(**changes)  # type: ignore[arg-type]
    assert field in [f for f, _ in policy.problems()]
