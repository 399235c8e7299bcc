"""Running a loaded scenario: build a runtime, let the system drive it, report.

The run is bounded by the scenario's ``timeout`` on the runtime clock; a
system that has not finished by then reports what it has (its invariants
fail with the reason) rather than hanging the CLI.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from runtime._simloop import run
from runtime._system import Runtime
from runtime.scenario._loader import LoadedScenario
from runtime.scenario._report import Report
from runtime.scenario._system_api import (
    InvariantResult,
    ProgressFn,
    ScenarioContext,
    SystemOutcome,
)
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
) -> Report:
    """Run ``loaded`` to completion (or its timeout) and return the report."""
    header = loaded.header
    run_seed = header.seed if seed is None else seed
    out_dir = Path(out) if out is not None else default_out_dir(loaded)
    out_dir.mkdir(parents=True, exist_ok=True)
    store_url = (store or header.store).replace("{out}", str(out_dir))
    scenario_dir = Path(loaded.path).resolve().parent
    if str(scenario_dir) not in sys.path:
        sys.path.insert(0, str(scenario_dir))

    async def main() -> tuple[SystemOutcome, str]:
        async with Runtime(store=store_url, seed=run_seed) as rt:
            loaded.system.register_faults(rt)
            ctx = ScenarioContext(
                rt=rt, name=header.name, seed=run_seed, clock=header.clock, out_dir=out_dir,
                scenario_dir=scenario_dir, deadline=rt.now() + header.timeout, progress=progress,
            )
            rt.faults.install(loaded.faults)
            try:
                async with asyncio.timeout(header.timeout + _GRACE):
                    outcome = await loaded.system.run(ctx, loaded.config, loaded.expect)
            except TimeoutError:
                outcome = SystemOutcome(invariants=[InvariantResult(
                    "finished", False, f"did not finish within {header.timeout:g} s")])
            if rt.failure is not None:
                outcome.invariants.append(InvariantResult(
                    "supervision", False, f"runtime failed: {rt.failure}"))
                rt.failure = None
            return outcome, rt.trace.digest

    outcome, digest = run(main, simulated=header.clock == "simulated", seed=run_seed)
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
    )
