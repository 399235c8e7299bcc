"""The deployment invariants, checked against what the fleet really served.

The controller's durable state says what was decided; the fleet ledger
(every request the hosts served, every revision they applied, and when)
says what happened; the hosts themselves say what they run at the end.

- ``bad_rejected``: a version worse than its control beyond the tolerance
  (ground truth) never ended up in force: its experiment or a wave rejected
  it and it was rolled back.
- ``good_approved``: a version no worse than its control was approved and
  ended up in force on every host (vacuous if an earlier configuration's
  rejection stopped the deployment before it).
- ``exposure_bounded``: in each experiment, the share of requests that saw
  the unapproved version is at most ``fraction + tolerance``, where the
  tolerance is ``exposure_tolerance`` plus 4 binomial standard deviations.
- ``ordering``: a configuration's experimental version was first served, and
  its experiment began, only after the previous configuration's version was
  approved and promoted to every host (never, if it was not).
- ``rollback_complete``: after every rejection every host was running the
  control revision within ``rollback_within`` of the decision, and the
  rejected version was not served after that.
- ``converged``: the deployment finished and every host runs exactly the
  approved versions, with no experiment, both in the store and in memory.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from actors.deploy._config import DeployExpect
from actors.deploy._host import HostStatus
from actors.deploy._ledger import FleetLedger
from actors.deploy._model import Truth
from actors.deploy._plan import step_tag
from actors.deploy._records import Assignment, DeploymentState, StageResult
from actors.deploy._spec import DeploymentSpec
from runtime.scenario import InvariantResult


def _experiment(state: DeploymentState, config: str) -> StageResult | None:
    return next((r for r in state.results if r.kind == "experiment" and r.config == config),
                None)


def _promoted_at(state: DeploymentState, config: str) -> float | None:
    """When ``config``'s last wave was approved (its version in force everywhere)."""
    waves = [r for r in state.results if r.kind == "wave" and r.config == config]
    last = waves[-1] if waves else None
    if last is not None and last.verdict == "approved" \
            and state.approved.get(config) == last.version:
        return last.decided_at
    return None


def _history(state: DeploymentState, config: str) -> str:
    stages = [f"{r.kind} s{r.stage}={r.verdict}" for r in state.results if r.config == config]
    return ", ".join(stages) or "not run"


def check_bad_rejected(spec: DeploymentSpec, state: DeploymentState,
                       truths: Mapping[str, Truth]) -> InvariantResult:
    bad = [c for c in spec.configs if truths.get(c.name) == "bad"]
    if not bad:
        return InvariantResult("bad_rejected", True, "no bad version in this scenario")
    wrong = [c for c in bad if state.approved.get(c.name) == c.experimental]
    parts = [f"{c.name}={c.experimental}: {_history(state, c.name)}" for c in bad]
    return InvariantResult("bad_rejected", not wrong,
                           ("bad version in force at the end: " if wrong else "")
                           + "; ".join(parts))


def check_good_approved(spec: DeploymentSpec, state: DeploymentState,
                        truths: Mapping[str, Truth]) -> InvariantResult:
    good = [c for c in spec.configs if truths.get(c.name) == "good"]
    if not good:
        return InvariantResult("good_approved", True, "no good version in this scenario")
    wrong, parts = [], []
    for change in good:
        run = _experiment(state, change.name)
        if run is None:
            parts.append(f"{change.name}={change.experimental}: not run (stopped earlier)")
            continue
        if state.approved.get(change.name) != change.experimental:
            wrong.append(change.name)
        parts.append(f"{change.name}={change.experimental}: {_history(state, change.name)}")
    return InvariantResult("good_approved", not wrong,
                           ("good version not in force at the end: " if wrong else "")
                           + "; ".join(parts))


def check_exposure(spec: DeploymentSpec, state: DeploymentState, ledger: FleetLedger,
                   tolerance: float) -> InvariantResult:
    f = spec.analysis.fraction
    held, parts = True, []
    for result in state.results:
        if result.kind != "experiment":
            continue
        total, exposed = ledger.step_requests(step_tag(result.stage))
        if total == 0:
            parts.append(f"{result.config}: no requests")
            continue
        slack = tolerance + 4.0 * math.sqrt(f * (1.0 - f) / total)
        share = exposed / total
        ok = share <= f + slack
        held &= ok
        parts.append(f"{result.config}={result.version}: {exposed}/{total} = {share:.4f} "
                     f"{'<=' if ok else '>'} {f:g} + {slack:.4f}")
    detail = (f"tolerance = {tolerance:g} + 4 binomial sd; " + "; ".join(parts)) if parts \
        else "no experiment ran"
    return InvariantResult("exposure_bounded", held, detail)


def check_ordering(spec: DeploymentSpec, state: DeploymentState,
                   ledger: FleetLedger) -> InvariantResult:
    held, parts = True, []
    for prev, change in zip(spec.configs, spec.configs[1:], strict=False):
        promoted = _promoted_at(state, prev.name)
        first = ledger.first_served.get((change.name, change.experimental))
        first_at = None if first is None else first - state.created_at
        run = _experiment(state, change.name)
        if promoted is None:
            ok = first_at is None and run is None
            parts.append(f"{change.name}: {prev.name} never approved, {change.name} "
                         f"{'never started' if ok else 'started anyway'}")
        else:
            started = run.started_at if run is not None else None
            ok = (first_at is None or first_at >= promoted - 1e-9) and (
                started is None or started >= promoted - 1e-9)
            parts.append(f"{change.name}: {prev.name} promoted at {promoted:.1f} s, "
                         f"experiment began at {_fmt(started)}, first served {_fmt(first_at)}")
        held &= ok
    return InvariantResult("ordering", held, "; ".join(parts) or "a single configuration")


def check_rollback(spec: DeploymentSpec, state: DeploymentState, ledger: FleetLedger,
                   within: float) -> InvariantResult:
    held, parts = True, []
    for result in state.results:
        if result.rollback_revision is None:
            continue
        revision = result.rollback_revision
        times = {}
        for applied in ledger.applied:
            if applied.revision >= revision and applied.host not in times:
                times[applied.host] = applied.time - state.created_at
        missing = [h for h in spec.hosts if h not in times]
        done_at = max(times.values(), default=math.inf) if not missing else math.inf
        last = ledger.last_served.get((result.config, result.version))
        served_after = last is not None and last - state.created_at > done_at + 1e-9
        ok = not missing and done_at <= result.decided_at + within and not served_after
        held &= ok
        took = done_at - result.decided_at
        parts.append(
            f"{result.kind} s{result.stage} {result.verdict}: "
            + (f"hosts never rolled back: {', '.join(missing)}" if missing else
               f"every host on control {took:.2f} s after the decision (limit {within:g} s)")
            + (", rejected version served afterwards" if served_after else ""))
    return InvariantResult("rollback_complete", held, "; ".join(parts) or "nothing rolled back")


def check_converged(spec: DeploymentSpec, state: DeploymentState, statuses: list[HostStatus],
                    records: Mapping[str, Assignment | None]) -> InvariantResult:
    if state.phase != "finished":
        return InvariantResult("converged", False,
                               f"deployment not finished (phase {state.phase}, step {state.step})")
    expected = state.approved
    off = [s.host for s in statuses if s.control != expected or s.experiment]
    stale = [h for h, a in records.items()
             if a is None or a.control != expected or a.experiment]
    if len(statuses) != len(spec.hosts):
        off.append(f"{len(spec.hosts) - len(statuses)} host(s) did not answer")
    versions = ", ".join(f"{k}={v}" for k, v in sorted(expected.items()))
    if off or stale:
        return InvariantResult("converged", False,
                               f"expected {versions} everywhere; running otherwise: {off}; "
                               f"stored otherwise: {stale}")
    return InvariantResult("converged", True,
                           f"all {len(statuses)} hosts run {versions} ({state.outcome})")


def check_expectations(state: DeploymentState, expect: DeployExpect) -> list[InvariantResult]:
    found = []
    for config, wanted in sorted(expect.verdicts.items()):
        run = _experiment(state, config)
        got = run.verdict if run is not None else "not run"
        found.append(InvariantResult(f"verdict_{config}", got == wanted,
                                     f"experiment verdict {got} (expected {wanted})"))
    if expect.outcome:
        found.append(InvariantResult("outcome", state.outcome == expect.outcome,
                                     f"{state.outcome or 'unfinished'} "
                                     f"(expected {expect.outcome})"))
    return found


def _fmt(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"
