"""What a deploy scenario reports: stages with evidence, metrics, fault placement."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from actors.deploy._config import DeployExpect
from actors.deploy._fleet import Fleet
from actors.deploy._model import Truth
from actors.deploy._plan import step_tag
from actors.deploy._records import DeploymentState, StageResult
from runtime import Runtime
from runtime.scenario import InvariantResult, MetricValue, exercised_floors


def stages_json(state: DeploymentState) -> list[dict[str, object]]:
    """The report's ``stages``: every stage run, in order, with its evidence."""
    found = []
    for result in state.results:
        item: dict[str, object] = msgspec.to_builtins(result)
        item["time_to_decision"] = round(result.decided_at - result.started_at, 6)
        found.append(item)
    return found


def _stage_at(state: DeploymentState, at: float) -> tuple[str, str]:
    """(stage kind, label) of the stage running at ``at`` (seconds since creation)."""
    for result in state.results:
        if result.started_at - 1e-9 <= at <= result.decided_at + 1e-9:
            return result.kind, f"s{result.stage} {result.kind} {result.config}"
        if result.rolled_back_at is not None and result.decided_at < at <= result.rolled_back_at:
            return "rollback", f"rollback of s{result.stage}"
    if state.phase != "finished" and state.action == "step" and at >= state.step_started_at \
            - state.created_at:
        return "current", f"s{state.step} (undecided)"
    return "between", "between stages"


def fault_events(fleet: Fleet, state: DeploymentState) -> list[dict[str, object]]:
    """Where each fault's effect landed: restarts, silenced hosts, metrics outages."""
    found: list[dict[str, object]] = []
    for time, kind, target in fleet.context.ledger.events:
        at = time - state.created_at
        stage_kind, label = _stage_at(state, at)
        found.append({"at": round(at, 6), "kind": kind, "target": target,
                      "stage_kind": stage_kind, "stage": label})
    return found


def exercised(fleet: Fleet, state: DeploymentState, expect: DeployExpect,
              rt: Runtime) -> list[InvariantResult]:
    """A scenario that claims to test a fault must show the fault happened where it says."""
    ledger = fleet.context.ledger
    found: list[InvariantResult] = []
    events = fault_events(fleet, state)
    for kind in expect.faults_during:
        hits = [f"{e['kind']} {e['target']} at {e['at']:.1f} s" for e in events
                if e["stage_kind"] == kind]
        found.append(InvariantResult(f"fault_during_{kind}", bool(hits),
                                     "; ".join(hits[:4]) or f"no fault landed in a {kind}"))
    missing_looks = sum(r.missing_data_looks for r in state.results) + state.missing_data_looks
    return found + exercised_floors((
        ("host_restarts", expect.min_host_restarts, ledger.restarts(f"{fleet.name}.host-")),
        ("controller_restarts", expect.min_controller_restarts,
         ledger.restarts(fleet.controller_name)),
        ("replays", expect.min_replays, state.replays),
        ("missing_data_looks", expect.min_missing_data_looks, missing_looks),
    ))


def _first(results: list[StageResult], kind: str) -> StageResult | None:
    return next((r for r in results if r.kind == kind), None)


def metrics(fleet: Fleet, state: DeploymentState, truths: Mapping[str, Truth],
            rt: Runtime) -> dict[str, MetricValue]:
    ledger = fleet.context.ledger
    spec = fleet.spec
    exposed = sum(ledger.step_requests(step_tag(r.stage))[1]
                  for r in state.results if r.kind == "experiment")
    bad = sum(ledger.by_version.get((c.name, c.experimental), 0)
              for c in spec.configs if truths.get(c.name) == "bad")
    first = _first(state.results, "experiment")
    end = max([r.rolled_back_at or r.decided_at for r in state.results], default=0.0)
    verdicts = [r.verdict for r in state.results]
    return {
        "outcome": state.outcome or "unfinished",
        "stages_run": len(state.results),
        "stages_approved": verdicts.count("approved"),
        "stages_rejected": verdicts.count("rejected"),
        "stages_inconclusive": verdicts.count("inconclusive"),
        "requests": ledger.requests,
        "errors": ledger.errors,
        "requests_unreported": ledger.unreported,
        "requests_exposed_unapproved": exposed,
        "requests_on_bad_versions": bad,
        "first_decision_s": round(first.decided_at - first.started_at, 3) if first else 0.0,
        "deployment_s": round(end, 3),
        "bake_extensions": sum(r.extensions for r in state.results),
        "missing_data_looks": sum(r.missing_data_looks for r in state.results),
        "host_restarts": ledger.restarts(f"{fleet.name}.host-"),
        "controller_restarts": ledger.restarts(fleet.controller_name),
        "pending_steps_replayed": state.replays,
        "silenced_reports": ledger.silenced_reports,
        "metrics_outages": fleet.context.metrics.outages,
        "metrics_calls_failed": fleet.context.metrics.failed_calls,
        "faults_injected": rt.faults.injected,
    }
