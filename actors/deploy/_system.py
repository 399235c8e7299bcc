"""The ``[deploy]`` scenario system: run a deployment, inject faults, check invariants.

Fault kinds of its own (passive, checked where they strike):

- ``stop_reporting`` (target a host, e.g. ``deploy.host-2``): the host's
  metrics agent goes silent for ``duration`` (forever if 0); what it serves
  meanwhile is never reported.
- ``metrics_outage`` (target ``deploy.metrics``): the metrics backend refuses
  every publish and query for ``duration``.

Host and controller crashes use the built-in ``crash`` kind on
``deploy.host-*`` and ``deploy.controller``.

Running a scenario again on the same store resumes its deployment, as the
other systems resume theirs: the controller recovers the stored stage (a
finished deployment is reported again). The fleet ledger (what hosts served)
is in memory, so a resumed run checks the durable outcome — ``bad_rejected``,
``good_approved``, ``converged``, verdicts — and reports that the
ledger-based checks (``exposure_bounded``, ``ordering``,
``rollback_complete``) and the fault floors belong to the run that served the
traffic.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import msgspec

from actors.deploy import _keys as keys
from actors.deploy._checks import (
    check_bad_rejected,
    check_converged,
    check_expectations,
    check_exposure,
    check_good_approved,
    check_ordering,
    check_rollback,
)
from actors.deploy._config import DeployConfig, DeployExpect
from actors.deploy._entity import DeploymentControllerEntity
from actors.deploy._fleet import Fleet
from actors.deploy._host import HostStatus, ReadHostStatus
from actors.deploy._host_entity import DeploymentHostEntity, status_of
from actors.deploy._model import LatencyModel, Truth
from actors.deploy._records import Assignment, DeploymentState
from actors.deploy._report import exercised, fault_events, metrics, stages_json
from actors.deploy._spec import DeploymentSpec, wave_sizes
from runtime import Backoff, Runtime, ShardlineError
from runtime.scenario import (
    InvariantResult,
    ScenarioContext,
    ScenarioSystem,
    SystemOutcome,
)
from runtime.store import Put, Store, without_faults

_decode_assignment = msgspec.msgpack.Decoder(Assignment).decode


async def claim_deployment(store: Store, name: str) -> tuple[str, bool]:
    """The deployment id of scenario ``name`` in this store, and whether it existed."""
    key = keys.generation_key(name)
    stored = await store.get(key)
    if stored is not None:
        return f"{name}-{int(stored.value)}", True
    await store.write([Put(key, b"1", expect_version=0)])
    return f"{name}-1", False


_STATUS_ATTEMPTS = 20
_STATUS_TIMEOUT = 5.0
_STATUS_RETRY = Backoff(min=0.05, max=1.0, jitter=0.2)


async def _host_statuses(rt: Runtime, fleet: Fleet) -> list[HostStatus]:
    """What every host runs, asked of the hosts themselves for ``converged``.

    The fault plan is still live while the checks run: an ask that meets an
    injected crash, a restart or a pause is asked again after a backoff. A
    host that never answers is left out, and ``converged`` says so; the run
    is not ended by the exception.
    """
    found: list[HostStatus] = []
    for host, ref in fleet.hosts.items():
        for attempt in range(_STATUS_ATTEMPTS):
            try:
                status = await ref.ask(ReadHostStatus(), timeout=_STATUS_TIMEOUT)
            except ShardlineError as exc:
                rt.trace.record(rt.now(), "status_retry", host, type(exc).__name__)
                await rt.sleep(_STATUS_RETRY.delay(attempt, rt.random.random()))
                continue
            found.append(status_of(status))
            break
    return found


async def _settled_statuses(rt: Runtime, fleet: Fleet, spec: DeploymentSpec,
                            state: DeploymentState,
                            records: Mapping[str, Assignment | None]) -> list[HostStatus]:
    """The hosts' statuses once they converged, or as they are two report intervals on.

    A host that the controller's last assignment did not reach (a partition, a lost
    push) reads it from the store at its next report, so convergence is due within
    one report interval of the end, not at the instant the controller finished."""
    deadline = rt.now() + 2 * spec.report_interval
    while True:
        statuses = await _host_statuses(rt, fleet)
        if check_converged(spec, state, statuses, records).held or rt.now() >= deadline:
            return statuses
        await rt.sleep(spec.report_interval / 4)


def ground_truth(config: DeployConfig, expect: DeployExpect) -> dict[str, Truth]:
    """Per configuration: the built-in model's truth, overridden by ``expect.truth``."""
    truths: dict[str, Truth] = {}
    if isinstance(config.model, LatencyModel):
        for index, change in enumerate(config.configs):
            truths[change.name] = config.model.truth(config.configs, index, config.analysis)
    truths.update(expect.truth)
    return truths


class DeploySystem(ScenarioSystem[DeployConfig, DeployExpect]):
    """Safe deployment: experiments judged statistically, promotion in waves, rollback."""

    section = "deploy"
    config_type = DeployConfig
    expect_type = DeployExpect
    fault_kinds = ("stop_reporting", "metrics_outage")
    bench_fault_targets = {"actors": "deploy.host-*", "stop_reporting": "deploy.host-*",
                     "metrics_outage": "deploy.metrics"}

    def register_node(self, rt: Runtime) -> None:
        """A node may run deployment controllers (one entity per deployment) and hosts
        (one entity per host of a deployment)."""
        rt.register_entity(DeploymentControllerEntity)
        rt.register_entity(DeploymentHostEntity)

    def check(self, config: DeployConfig, expect: DeployExpect) -> list[tuple[str, str]]:
        return config.problems() + [(f"expect.{f}", m) for f, m in expect.problems(config)]

    def placement(self, config: DeployConfig) -> dict[str, object]:
        """The fleet, the changes and the policy the stored deployment was planned with."""
        return {"name": config.name, "hosts": config.hosts, "configs": config.configs,
                "analysis": config.analysis, "model": config.model}

    def planned_run(self, config: DeployConfig) -> float:
        """Every step of the plan (each configuration's experiment, then its waves) bakes
        in full and is applied host by host, even when every change is approved."""
        analysis = config.analysis
        waves = len(wave_sizes(analysis.waves, config.hosts))
        apply = (config.hosts - 1) * float(config.apply_interval)
        per_config = analysis.bake_for("experiment") + waves * analysis.bake_for("wave")
        return len(config.configs) * (per_config + (1 + waves) * apply)

    def fault_targets(self, config: DeployConfig) -> dict[str, list[str]]:
        """Hosts and the controller (as ``Fleet`` names them); the metrics backend."""
        hosts = [f"{config.name}.host-{i}" for i in range(config.hosts)]
        return {"actor": [*hosts, f"{config.name}.controller"],
                "stop_reporting": hosts, "metrics_outage": [f"{config.name}.metrics"]}

    async def run(self, ctx: ScenarioContext, config: DeployConfig,
                  expect: DeployExpect) -> SystemOutcome:
        rt = ctx.rt
        deployment, resumed = await claim_deployment(without_faults(rt.store), config.name)
        spec = DeploymentSpec(
            deployment, [f"{config.name}.host-{i}" for i in range(config.hosts)],
            list(config.configs), config.analysis, float(config.report_interval),
            float(config.apply_interval))
        fleet = Fleet(rt, spec, model=config.model, request_rate=config.request_rate,
                      tick=float(config.tick), name=config.name,
                      max_restarts=config.max_restarts, within=float(config.within),
                      restart_backoff=config.restart_backoff,
                      on_nodes=rt.node_name is not None)
        await fleet.start()
        ctx.observe(fleet.context.ledger.observation)
        finished = await self._wait(ctx, fleet)
        await ctx.end_observation()
        state = await fleet.state()
        assert state is not None
        records = await self._records(rt, spec)
        statuses = await _settled_statuses(rt, fleet, spec, state, records)
        await fleet.stop()
        invariants = self._invariants(spec, config, expect, fleet, state, statuses, records,
                                      resumed)
        if not finished:
            invariants.insert(0, InvariantResult(
                "finished", False, f"deployment not finished by the scenario deadline "
                f"({ctx.deadline:g} s); phase {state.phase}, step {state.step}"))
        if resumed:
            invariants.append(InvariantResult(
                "resumed", True, f"resumed deployment {deployment!r} from the store; "
                "exposure_bounded, ordering, rollback_complete and the fault floors are "
                "checked by the run that served the traffic"))
        else:
            invariants += exercised(fleet, state, expect, rt)
        truths = ground_truth(config, expect)
        verdicts = {f"verdict_{r.config}": r.verdict for r in state.results
                    if r.kind == "experiment"}
        return SystemOutcome(
            invariants=invariants,
            metrics={**verdicts, **metrics(fleet, state, truths, rt)},
            extra={"deployment": spec.deployment, "outcome": state.outcome,
                   "stages": stages_json(state),
                   "truth": truths,
                   "approved": state.approved,
                   "faults": fault_events(fleet, state)})

    @staticmethod
    async def _wait(ctx: ScenarioContext, fleet: Fleet) -> bool:
        rt = ctx.rt
        done = fleet.context.finished
        while not done.is_set():
            left = ctx.deadline - rt.now()
            if left <= 0:
                return False
            state = await fleet.state()
            if state is not None:
                ctx.progress(len(state.results), len(fleet.context.spec.configs),
                             f"stages decided, step {state.step} {state.phase}")
            try:
                async with asyncio.timeout(min(left, 30.0)):
                    await done.wait()
            except TimeoutError:
                pass
        return True

    @staticmethod
    async def _records(rt: Runtime, spec: DeploymentSpec) -> dict[str, Assignment | None]:
        store = without_faults(rt.store)
        found: dict[str, Assignment | None] = {}
        for host in spec.hosts:
            stored = await store.get(keys.host_key(spec.deployment, host))
            found[host] = _decode_assignment(stored.value) if stored is not None else None
        return found

    @staticmethod
    def _invariants(spec: DeploymentSpec, config: DeployConfig, expect: DeployExpect,
                    fleet: Fleet, state: DeploymentState, statuses: list[HostStatus],
                    records: dict[str, Assignment | None],
                    resumed: bool) -> list[InvariantResult]:
        truths = ground_truth(config, expect)
        ledger = fleet.context.ledger
        served = not resumed  # the ledger holds all the traffic only in the run that served it
        bad_rejected, good_approved = expect.truth_checks(config)
        checks: list[tuple[bool, Callable[[], InvariantResult]]] = [
            (bad_rejected, lambda: check_bad_rejected(spec, state, truths)),
            (good_approved, lambda: check_good_approved(spec, state, truths)),
            (expect.exposure_bounded and served,
             lambda: check_exposure(spec, state, ledger, expect.exposure_tolerance)),
            (expect.ordering and served, lambda: check_ordering(spec, state, ledger)),
            (expect.rollback_complete and served,
             lambda: check_rollback(spec, state, ledger, float(expect.rollback_within))),
            (expect.converged, lambda: check_converged(spec, state, statuses, records)),
        ]
        found = [check() for wanted, check in checks if wanted]
        return found + check_expectations(state, expect)


SYSTEM = DeploySystem()
