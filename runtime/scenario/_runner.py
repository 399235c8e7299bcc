"""Running a loaded scenario: build a runtime, let the system drive it, report.

The run is bounded by the scenario's ``timeout`` on the runtime clock; a
system that has not finished by then reports what it has (its invariants
fail with the reason) rather than hanging the CLI.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

import msgspec

from runtime._errors import StoreError
from runtime._simloop import run
from runtime._system import Runtime
from runtime.scenario._fingerprint import claim_store, keep_wall_mark, mark_wall
from runtime.scenario._join import JoinedNodes, JoinOptions, check_join_run
from runtime.scenario._loader import LoadedScenario
from runtime.scenario._node_faults import check_node_faults
from runtime.scenario._nodes import (
    ScenarioNodes,
    check_node_run,
    node_floors,
    scenario_nodes,
    start_nodes,
)
from runtime.scenario._report import Report
from runtime.scenario._sampler import Sample, Sampler
from runtime.scenario._system_api import (
    InvariantResult,
    ProgressFn,
    ScenarioContext,
    SystemOutcome,
)
from runtime.store._faulty import without_faults
from runtime.store._types import StoreSize
from runtime.store._url import shown_url

_GRACE = 30.0


def default_out_dir(loaded: LoadedScenario) -> Path:
    """``out/<scenario name>``: stable, so running again resumes against the same store."""
    return Path("out") / loaded.header.name


def run_scenario(
    loaded: LoadedScenario,
    *,
    seed: int | None = None,
    store: str | None = None,
    out: str | Path | None = None,
    progress: ProgressFn | None = None,
    on_sample: Callable[[Sample], None] | None = None,
    nodes: int | None = None,
    join: JoinOptions | None = None,
) -> Report:
    """Run ``loaded`` to completion (or its timeout) and return the report.

    A store that already holds a run of this scenario is resumed; one made for
    another scenario, seed or placement is refused (``ScenarioError``, see
    ``runtime.scenario._fingerprint``).
    With ``[scenario] samples`` set, one JSON line per time bucket goes to
    ``<out>/samples.jsonl`` (rewritten each run) and to ``on_sample``.
    ``nodes`` (else ``[scenario] nodes``) runs it across that many nodes
    (``runtime.scenario._nodes``); they need a shared store (``ScenarioError``).
    ``join`` drives it through the live nodes of an existing cluster instead
    (``runtime.scenario._join``).
    """
    header = loaded.header
    run_seed = header.seed if seed is None else seed
    out_dir = Path(out) if out is not None else default_out_dir(loaded)
    out_dir.mkdir(parents=True, exist_ok=True)
    store_url = (store or header.store).replace("{out}", str(out_dir))
    scenario_dir = Path(loaded.path).resolve().parent
    if str(scenario_dir) not in sys.path:
        sys.path.insert(0, str(scenario_dir))

    samples_file = (out_dir / "samples.jsonl").open("wb") if header.samples else None
    encoder = msgspec.json.Encoder()

    def record(sample: Sample) -> None:
        if samples_file is not None:
            samples_file.write(encoder.encode(sample) + b"\n")
        if on_sample is not None:
            on_sample(sample)

    node_count = nodes if nodes is not None else header.nodes
    cluster_nodes: ScenarioNodes | None = None
    if join is not None:
        check_join_run(loaded, store_url)
        cluster_nodes = JoinedNodes(join, store_url, loaded.faults, loaded.path,
                                    loaded.system.section)
    elif node_count is None:
        check_node_faults(loaded.path, loaded.faults, None, header.clock)
    else:
        check_node_run(loaded, node_count, store_url)
        cluster_nodes = scenario_nodes(node_count, header.clock, store_url, out_dir,
                                       loaded.system.section)

    async def main() -> tuple[SystemOutcome, str, StoreSize | None]:
        async with Runtime(store=store_url, seed=run_seed, cluster=(
                cluster_nodes.driver_cluster() if cluster_nodes is not None else None)) as rt:
            store = without_faults(rt.store)
            earlier = await claim_store(  # before anything is stamped
                store, store_url, system=loaded.system.section, scenario=header.name,
                seed=run_seed, placement=loaded.system.placement(loaded.config), clock=rt.clock)
            marks = asyncio.get_running_loop().create_task(keep_wall_mark(store, rt.clock)) \
                if rt.simulated else None
            loaded.system.register_faults(rt)
            sampler = Sampler(header.samples, record) if header.samples else None
            ctx = ScenarioContext(
                rt=rt, name=header.name, seed=run_seed, clock=header.clock, out_dir=out_dir,
                scenario_dir=scenario_dir, deadline=rt.now() + header.timeout, progress=progress,
                previous_runs=earlier.runs if earlier is not None else 0,
                sampler=sampler,
            )
            origin = 0.0
            if cluster_nodes is not None:
                await start_nodes(cluster_nodes, rt, loaded.faults)
                origin = rt.now()  # fault times count from here, not from node start-up
            rt.faults.install(loaded.faults, origin=origin)
            try:
                async with asyncio.timeout(header.timeout + _GRACE):
                    outcome = await loaded.system.run(ctx, loaded.config, loaded.expect)
            except TimeoutError:
                outcome = SystemOutcome(invariants=[InvariantResult(
                    "finished", False, f"did not finish within {header.timeout:g} s")])
            finally:
                if marks is not None:
                    marks.cancel()
                    await mark_wall(store, rt.clock)
                if cluster_nodes is not None:
                    rt.faults.cancel()
                    tallies = await cluster_nodes.report(rt)
                    await cluster_nodes.stop()
            if cluster_nodes is not None:
                outcome.extra["nodes"] = msgspec.to_builtins(tallies)
                outcome.invariants.extend(node_floors(loaded.node_expect, cluster_nodes))
            if sampler is not None:
                await sampler.stop()
                if summary := sampler.latency_summary():
                    outcome.extra.setdefault("latency", summary)
                if sampler.unit:
                    outcome.extra.setdefault("throughput_unit", sampler.unit)
            if rt.failure is not None:
                outcome.invariants.append(InvariantResult(
                    "supervision", False, f"runtime failed: {rt.failure}"))
                rt.failure = None
            try:
                size: StoreSize | None = await store.size()
            except StoreError:
                size = None
            return outcome, rt.trace.digest, size

    try:
        outcome, digest, size = run(main, simulated=header.clock == "simulated",
                                    seed=run_seed)
    finally:
        if samples_file is not None:
            samples_file.close()
    return Report(
        scenario=header.name,
        seed=run_seed,
        clock=header.clock,
        passed=all(i.held for i in outcome.invariants),
        invariants=outcome.invariants,
        metrics=outcome.metrics,
        trace_digest=digest,
        system=loaded.system.section,
        store=shown_url(store_url),
        out=str(out_dir),
        extra=outcome.extra,
        store_bytes=size.bytes if size is not None else None,
        store_size_basis=size.basis if size is not None else "",
    )
