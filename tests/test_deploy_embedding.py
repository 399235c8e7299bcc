"""The embedding API: ``Fleet`` with an application's own handler, durable recovery of
hosts and controller, and the public surface. Everything runs in simulated time."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TypeVar

import pytest

import actors.deploy as deploy
import runtime
from actors.deploy import (
    Analysis,
    ConfigChange,
    DeploymentError,
    DeploymentSpec,
    DeploymentState,
    Fleet,
    LatencyModel,
    Request,
    VersionModel,
)
from runtime import Fault, Runtime

HOSTS = [f"web-{i}" for i in range(3)]


T = TypeVar("T")


def sim(main: Callable[[], Awaitable[T]], seed: int = 0) -> T:
    return runtime.run(main, simulated=True, seed=seed)


async def handler(configs: Mapping[str, str], request: Request) -> str:
    """An application: pool v2 is 30 % slower, cache c2 fails one request in ten."""
    rng = random.Random(request.id)
    slow = 1.3 if configs["pool"] == "v2-slow" else 1.0
    await asyncio.sleep(0.02 * slow * math.exp(0.3 * rng.gauss(0.0, 1.0)))
    if configs["cache"] == "c2" and rng.random() < 0.1:
        raise ConnectionError("cache miss storm")
    return f"{request.id} via pool={configs['pool']} cache={configs['cache']}"


POLICY = Analysis(fraction=0.2, bake=60.0, wave_bake=30.0,  # type: ignore[arg-type]
                  check_interval=15.0, min_samples=100, waves=[1.0])  # type: ignore[arg-type]


async def drive(fleet: Fleet, served: list[deploy.Served]) -> DeploymentState:
    """Clients sending requests to every host until the deployment finishes."""
    stop = asyncio.Event()

    async def client(host: str) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            served.append(await fleet.serve(host, f"{host}/req-{n}"))
            await asyncio.sleep(0.01)

    tasks = [asyncio.create_task(client(h)) for h in fleet.spec.hosts]
    try:
        return await fleet.wait(timeout=3600)
    finally:
        stop.set()
        await asyncio.gather(*tasks)


def test_application_handler_is_the_service_model() -> None:
    async def main() -> tuple[DeploymentState, list[deploy.Served], list[deploy.Served]]:
        async with Runtime(store="memory://") as rt:
            spec = DeploymentSpec("checkout", HOSTS, [ConfigChange("pool", "v1", "v2-slow"),
                                                      ConfigChange("cache", "c1", "c2")], POLICY)
            fleet = Fleet(rt, spec, handler=handler)
            await fleet.start()
            served: list[deploy.Served] = []
            state = await drive(fleet, served)
            retries = [await fleet.serve("web-0", s.request_id) for s in served[:40]]
            await fleet.stop()
            return state, served, retries

    state, served, retries = sim(main)
    assert [(r.kind, r.config, r.verdict) for r in state.results] == [
        ("experiment", "pool", "rejected")]
    assert state.approved == {"pool": "v1", "cache": "c1"} and state.outcome == "rolled back"
    latency = state.results[0].evidence.metrics[0]
    assert latency.metric == "latency" and latency.failed and (latency.effect or 0.0) > 0.2
    slow = [s for s in served if s.configs["pool"] == "v2-slow"]
    assert slow and all(s.variant == "experiment" for s in slow)
    assert served[0].result == f"{served[0].request_id} via pool=v1 cache=c1"
    # after the rollback every request runs the control
    assert all(r.configs == {"pool": "v1", "cache": "c1"} for r in retries)


def test_handler_errors_reject_on_top_of_an_approved_change() -> None:
    async def main() -> tuple[DeploymentState, list[deploy.Served]]:
        async with Runtime(store="memory://") as rt:
            spec = DeploymentSpec("checkout", HOSTS, [ConfigChange("pool", "v1", "v1.1"),
                                                      ConfigChange("cache", "c1", "c2")], POLICY)
            fleet = Fleet(rt, spec, handler=handler)
            await fleet.start()
            served: list[deploy.Served] = []
            state = await drive(fleet, served)
            await fleet.stop()
            return state, served

    state, served = sim(main)
    assert [(r.kind, r.config, r.verdict) for r in state.results] == [
        ("experiment", "pool", "approved"), ("wave", "pool", "approved"),
        ("wave", "pool", "approved"), ("experiment", "cache", "rejected")]
    errors = state.results[-1].evidence.metrics[1]
    assert errors.metric == "errors" and errors.failed
    failed = [s for s in served if not s.ok]
    assert failed and all(s.configs["cache"] == "c2" and "cache miss" in s.error for s in failed)
    # the cache experiment ran on top of the approved pool version only
    assert all(s.configs["pool"] == "v1.1" for s in served if s.configs["cache"] == "c2")
    assert state.approved == {"pool": "v1.1", "cache": "c1"}


MODEL = LatencyModel(versions={"a1": VersionModel(), "a2": VersionModel()})
SPEC = DeploymentSpec("restarts", [f"deploy.host-{i}" for i in range(4)],
                      [ConfigChange("config_a", "a1", "a2")],
                      Analysis(bake=60.0, wave_bake=30.0, check_interval=15.0,  # type: ignore[arg-type]
                               min_samples=100, waves=[1.0]))


async def until(fleet: Fleet, ready: Callable[[DeploymentState], bool]) -> DeploymentState:
    while True:
        state = await fleet.state()
        if state is not None and ready(state):
            return state
        await asyncio.sleep(0.1)


def test_restarted_host_comes_back_with_its_assigned_versions() -> None:
    async def main() -> tuple[list[deploy.HostStatus], list[deploy.HostStatus], Fleet]:
        async with Runtime(store="memory://") as rt:
            fleet = Fleet(rt, SPEC, model=MODEL, request_rate=80.0)
            await fleet.start()
            await until(fleet, lambda s: s.phase == "baking")
            before = await fleet.host_status()
            rt.faults.install([Fault(kind="crash", target="deploy.host-2", at=rt.now() + 0.2)])
            await asyncio.sleep(2.0)
            after = await fleet.host_status()
            await fleet.stop()
            return before, after, fleet

    before, after, fleet = sim(main)

    def versions(statuses: list[deploy.HostStatus]) -> list[tuple[object, ...]]:
        return [(s.host, s.revision, s.step, s.control, s.experiment, s.fraction)
                for s in statuses]

    assert versions(before) == versions(after)
    host = next(s for s in after if s.host == "deploy.host-2")
    assert host.revision == 1 and host.experiment == {"config_a": "a2"} and host.fraction == 0.1
    recovered = [a for a in fleet.context.ledger.applied
                 if a.host == "deploy.host-2" and a.how == "recover"]
    assert [a.revision for a in recovered] == [0, 1]  # first start, then the restart
    assert fleet.context.ledger.restarts("deploy.host-") == 1


def reference_state() -> DeploymentState:
    async def main() -> DeploymentState:
        async with Runtime(store="memory://") as rt:
            fleet = Fleet(rt, SPEC, model=MODEL, request_rate=80.0)
            await fleet.start()
            state = await fleet.wait(timeout=3600)
            await fleet.stop()
            return state

    return sim(main)


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
@pytest.mark.parametrize("stop_when", ["applying", "baking"])
def test_a_new_controller_resumes_the_stored_deployment(stop_when: str, backend: str,
                                                        tmp_path: Path) -> None:
    """Stop the whole fleet mid-step and start a new one on the same store: the
    pending assignment is replayed, a bake keeps its deadline, nothing restarts."""
    store = "memory://" if backend == "memory" else f"sqlite:///{tmp_path}/state.db"

    async def main() -> tuple[DeploymentState, DeploymentState]:
        # a short shutdown timeout: stopping cancels the controller mid-assignment
        async with Runtime(store=store, shutdown_timeout=0.1) as rt:
            first = Fleet(rt, SPEC, model=MODEL, request_rate=80.0)
            await first.start()
            if stop_when == "applying":
                await asyncio.sleep(0.7)  # first step assigned to some hosts only
            else:
                await until(first, lambda s: s.phase == "baking" and s.looks >= 2)
            stopped = await first.state()
            await first.stop()
            second = Fleet(rt, SPEC, model=MODEL, request_rate=80.0)
            await second.start()
            state = await second.wait(timeout=3600)
            await second.stop()
            assert stopped is not None
            return stopped, state

    stopped, state = sim(main)
    reference = reference_state()
    assert stopped.phase == stop_when and stopped.step == 0
    assert [(r.kind, r.verdict) for r in state.results] == [
        (r.kind, r.verdict) for r in reference.results]
    assert state.replays == (1 if stop_when == "applying" else 0)
    first, ref = state.results[0], reference.results[0]
    if stop_when == "baking":
        assert first.decided_at == pytest.approx(ref.decided_at)
    assert first.revision == ref.revision == 1
    assert state.approved == {"config_a": "a2"}


def test_bad_specs_are_refused_with_the_field() -> None:
    async def main() -> list[str]:
        errors = []
        async with Runtime(store="memory://") as rt:
            for spec, kwargs in (
                (DeploymentSpec("x", [], [ConfigChange("a", "1", "2")]), {}),
                (DeploymentSpec("x", ["h"], [ConfigChange("a", "1", "1")]), {}),
                (DeploymentSpec("x", ["h"], [ConfigChange("a", "1", "2")]),
                 {"request_rate": 10.0}),
            ):
                with pytest.raises(DeploymentError) as info:
                    Fleet(rt, spec, **kwargs)  # type: ignore[arg-type]
                errors.append(str(info.value))
        return errors

    errors = sim(main)
    assert "hosts: expected at least one host" in errors[0]
    assert "equals the control version" in errors[1]
    assert "generated traffic needs a service model" in errors[2]


def test_public_surface() -> None:
    assert sorted(deploy.__all__) == sorted([
        "SYSTEM", "Analysis", "AppHandler", "Assign", "Assignment", "ConfigChange",
        "ControllerMsg", "DeployConfig", "DeployExpect", "DeploySystem", "DeploymentContext",
        "DeploymentController", "DeploymentError", "DeploymentHost", "DeploymentSpec",
        "DeploymentState", "Evidence", "Fleet", "HostMsg", "HostStatus", "Judgement",
        "LatencyModel", "MetricEvidence", "MetricsReport", "MetricsStore", "MetricsUnavailable",
        "ReadDeployment", "ReadHostStatus", "Request", "Serve", "Served", "ServiceModel",
        "StageResult", "Truth", "VariantOutcomes", "Verdict", "VersionModel", "bucket",
        "compare_errors", "compare_latency", "judge", "variant_for", "wave_sizes"])
    assert deploy.SYSTEM.section == "deploy"
    assert set(deploy.SYSTEM.fault_kinds) == {"stop_reporting", "metrics_outage"}
