"""The ``[deploy]`` scenario system: run a deployment, inject faults, check invariants.

Fault kinds of its own (passive, checked where they strike):

- ``stop_reporting`` (target a host, e.g. ``deploy.host-2``): the host's
  metrics agent goes silent for ``duration`` (forever if 0); what it serves
  meanwhile is never reported.
- ``metrics_outage`` (target ``deploy.metrics``): the metrics backend refuses
  every publish and query for ``duration``.

Host and controller crashes use the built-in ``crash`` kind on
``deploy.host-*`` and ``deploy.controller``.

Each run starts a new deployment (``<name>-<generation>``) in the store, so
running a scenario again on the same store does not find a finished one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

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
from actors.deploy._fleet import Fleet
from actors.deploy._host import HostStatus
from actors.deploy._model import LatencyModel, ServiceModel, Truth
from actors.deploy._records import Assignment, DeploymentState
from actors.deploy._report import exercised, fault_events, metrics, stages_json
from actors.deploy._spec import DeploymentSpec
from runtime import ConflictError, Runtime
from runtime._callables import resolve_callable
from runtime.scenario import (
    InvariantResult,
    ScenarioContext,
    ScenarioSystem,
    SystemOutcome,
)
from runtime.store import Put

_decode_assignment = msgspec.msgpack.Decoder(Assignment).decode


async def next_generation(rt: Runtime, name: str) -> int:
    """Claim the next deployment number for scenario ``name`` (compare-and-set)."""
    key = keys.generation_key(name)
    while True:
        stored = await rt.store.get(key)
        current = int(stored.value) if stored is not None else 0
        try:
            await rt.store.write([Put(key, str(current + 1).encode(),
                                      expect_version=stored.version if stored else 0)])
        except ConflictError:
            continue
        return current + 1


def ground_truth(config: DeployConfig, expect: DeployExpect) -> dict[str, Truth]:
    """Per configuration: the built-in model's truth, overridden by ``expect.truth``."""
    truths: dict[str, Truth] = {}
    if isinstance(config.model, LatencyModel):
        for index, change in enumerate(config.configs):
            truths[change.name] = config.model.truth(config.configs, index, config.analysis)
    truths.update(expect.truth)
    return truths


class DeploySystem(ScenarioSystem[DeployConfig, DeployExpect]):
    section = "deploy"
    config_type = DeployConfig
    expect_type = DeployExpect
    fault_kinds = ("stop_reporting", "metrics_outage")
    fault_targets = {"actors": "deploy.host-*", "stop_reporting": "deploy.host-*",
                     "metrics_outage": "deploy.metrics"}

    def check(self, config: DeployConfig, expect: DeployExpect) -> list[tuple[str, str]]:
        return config.problems() + [(f"expect.{f}", m) for f, m in expect.problems(config)]

    async def run(self, ctx: ScenarioContext, config: DeployConfig,
                  expect: DeployExpect) -> SystemOutcome:
        rt = ctx.rt
        generation = await next_generation(rt, config.name)
        spec = DeploymentSpec(
            f"{config.name}-{generation}", [f"{config.name}.host-{i}" for i in range(config.hosts)],
            list(config.configs), config.analysis, float(config.report_interval),
            float(config.apply_interval))
        model: ServiceModel
        if isinstance(config.model, LatencyModel):
            model = config.model
        else:
            model = resolve_callable(config.model, what="service model")  # type: ignore[assignment]
        fleet = Fleet(rt, spec, model=model, request_rate=config.request_rate,
                      tick=float(config.tick), name=config.name,
                      max_restarts=config.max_restarts, within=float(config.within),
                      restart_backoff=config.restart_backoff)
        await fleet.start()
        ctx.observe(fleet.context.ledger.observation)
        finished = await self._wait(ctx, fleet)
        await ctx.end_observation()
        state = await fleet.state()
        assert state is not None
        statuses = await fleet.host_status()
        records = await self._records(rt, spec)
        await fleet.stop()
        invariants = self._invariants(spec, config, expect, fleet, state, statuses, records)
        if not finished:
            invariants.insert(0, InvariantResult(
                "finished", False, f"deployment not finished by the scenario deadline "
                f"({ctx.deadline:g} s); phase {state.phase}, step {state.step}"))
        invariants += exercised(fleet, state, expect, rt)
        truths = ground_truth(config, expect)
        return SystemOutcome(
            invariants=invariants,
            metrics=metrics(fleet, state, truths, rt),
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
        found: dict[str, Assignment | None] = {}
        for host in spec.hosts:
            stored = await rt.store.get(keys.host_key(spec.deployment, host))
            found[host] = _decode_assignment(stored.value) if stored is not None else None
        return found

    @staticmethod
    def _invariants(spec: DeploymentSpec, config: DeployConfig, expect: DeployExpect,
                    fleet: Fleet, state: DeploymentState, statuses: list[HostStatus],
                    records: dict[str, Assignment | None]) -> list[InvariantResult]:
        truths = ground_truth(config, expect)
        ledger = fleet.context.ledger
        checks: list[tuple[bool, Callable[[], InvariantResult]]] = [
            (expect.bad_rejected, lambda: check_bad_rejected(spec, state, truths)),
            (expect.good_approved, lambda: check_good_approved(spec, state, truths)),
            (expect.exposure_bounded,
             lambda: check_exposure(spec, state, ledger, expect.exposure_tolerance)),
            (expect.ordering, lambda: check_ordering(spec, state, ledger)),
            (expect.rollback_complete,
             lambda: check_rollback(spec, state, ledger, float(expect.rollback_within))),
            (expect.converged, lambda: check_converged(spec, state, statuses, records)),
        ]
        found = [check() for wanted, check in checks if wanted]
        return found + check_expectations(state, expect)


SYSTEM = DeploySystem()
