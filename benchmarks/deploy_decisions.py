"""Quality of deployment decisions: false rejections, misses, exposure, time to decision.

Runs a few hundred seeds of each case through the same code path as
``shardline run`` (a ``[deploy]`` scenario parsed by the loader and run by
the scenario runner in simulated time, memory store): a good change, a 10 %
and a 30 % latency regression, and a +1 pp and +5 pp error-rate regression.
Every third seed is fault-free (the in-process baseline); the others get two
host crashes at random times, and every other one of those also a controller
crash in the middle of the experiment's bake.

A *false rejection* is a good change not in force at the end; a *miss* is a
regression in force at the end (the experiment or any promotion wave may
catch it). Exposure counts requests served by the bad version, whichever
stage served them. Time to decision is from the experiment's start to the
stage that decided the change's fate (the last wave for an approval).

    .venv/bin/python benchmarks/deploy_decisions.py            # 300 seeds per case
    .venv/bin/python benchmarks/deploy_decisions.py --quick    # 30 seeds per case
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from typing import Any

from rich.console import Console
from rich.table import Table

from runtime import configure_logging
from runtime.scenario import LoadedScenario, parse_scenario, percentile, run_scenario

CASES: dict[str, dict[str, float]] = {
    "good change": {},
    "latency +10%": {"latency_factor": 1.10},
    "latency +30%": {"latency_factor": 1.30},
    "errors +1pp": {"error_rate": 0.01},
    "errors +5pp": {"error_rate": 0.05},
}
GOALS = {  # case -> (measure, limit)
    "good change": ("false rejections", 0.02),
    "latency +30%": ("misses", 0.01),
    "errors +5pp": ("misses", 0.01),
}
ANALYSIS = {
    "fraction": 0.1, "bake": "2m", "wave_bake": "1m", "check_interval": "20s",
    "min_samples": 300, "confidence": 0.98, "latency_tolerance": 0.05,
    "max_error_rate_increase": 0.005, "waves": [0.25, 1.0],
}


def scenario(case: str) -> dict[str, Any]:
    """The ``[deploy]`` scenario of one case, as the TOML file would hold it."""
    return {
        "scenario": {"name": "deploy-decisions", "store": "memory://", "timeout": "2h"},
        "deploy": {
            "hosts": 6, "request_rate": 120.0,
            "model": {"median": "40ms", "sigma": 0.4, "error_rate": 0.005,
                      "versions": {"a1": {}, "a2": CASES[case]}},
            "configs": [{"name": "config_a", "control": "a1", "experimental": "a2"}],
            "analysis": ANALYSIS,
        },
        "expect": {"rollback_within": "10s"},
    }


def faults_for(seed: int) -> tuple[str, list[dict[str, Any]]]:
    """Seed 0 mod 3: none; else two host crashes, and for 2 mod 3 a controller crash."""
    if seed % 3 == 0:
        return "clean", []
    rng = random.Random(f"deploy-decisions:{seed}")
    plan = [{"kind": "crash", "target": "deploy.host-*", "at": f"{rng.uniform(5, 300):.3f}s"}
            for _ in range(2)]
    if seed % 3 == 2:
        plan.append({"kind": "crash", "target": "deploy.controller",
                     "at": f"{rng.uniform(5, 120):.3f}s"})
    return "faults", plan


_loaded: dict[tuple[str, str], LoadedScenario] = {}


def run_one(job: tuple[str, int, str]) -> dict[str, Any]:
    """One seed of one case; returns the decision summary."""
    case, seed, out = job
    kind, plan = faults_for(seed)
    raw = scenario(case)
    raw["faults"] = plan
    loaded = parse_scenario(raw, f"<{case}>")
    report = run_scenario(loaded, seed=seed, store="memory://", out=out)
    extra = report.extra
    stages: list[dict[str, Any]] = extra["stages"]  # type: ignore[assignment]
    approved: dict[str, str] = extra["approved"]  # type: ignore[assignment]
    truth = extra["truth"]["config_a"]  # type: ignore[index]
    in_force = approved.get("config_a") == "a2"
    deciding = next((s for s in stages if s["verdict"] != "approved"),
                    stages[-1] if stages else None)
    started = stages[0]["started_at"] if stages else 0.0
    return {
        "case": case, "seed": seed, "faults": kind, "truth": truth,
        "in_force": in_force,
        "experiment_verdict": stages[0]["verdict"] if stages else "none",
        "caught_in_wave": bool(stages) and stages[0]["verdict"] == "approved" and not in_force,
        "time_to_decision": (deciding["decided_at"] - started) if deciding else None,
        "decided_by": _decided_by(deciding) if deciding and deciding["verdict"] != "approved"
        else "",
        "bad_exposure": report.metrics["requests_on_bad_versions"],
        "requests": report.metrics["requests"],
        # good_approved / bad_rejected are the decision itself, counted above
        "invariants_failed": [i.name for i in report.invariants if not i.held
                              and i.name not in ("good_approved", "bad_rejected")],
    }


def _decided_by(stage: dict[str, Any]) -> str:
    """``"<stage kind>: <failed critical metrics>"`` of a stage that did not approve."""
    failed = [m["metric"] for m in stage["evidence"]["metrics"] if m["critical"] and m["failed"]]
    return f"{stage['kind']}: {', '.join(failed) or stage['verdict']}"


def _rate(rows: list[dict[str, Any]], key: str, value: object = True) -> float:
    return sum(1 for r in rows if r[key] == value) / len(rows) if rows else 0.0


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    truth = rows[0]["truth"]
    wrong = _rate(rows, "in_force", truth != "good")
    times = [r["time_to_decision"] for r in rows if r["time_to_decision"] is not None]
    exposure = [float(r["bad_exposure"]) for r in rows]
    return {
        "seeds": len(rows), "truth": truth,
        "false_rejection_rate" if truth == "good" else "miss_rate": wrong,
        "experiment_inconclusive": _rate(rows, "experiment_verdict", "inconclusive"),
        "caught_in_wave": _rate(rows, "caught_in_wave"),
        "bad_exposure_mean": statistics.fmean(exposure) if exposure else 0.0,
        "bad_exposure_p95": percentile(exposure, 0.95),
        "requests_mean": statistics.fmean(float(r["requests"]) for r in rows),
        "decision_s_median": statistics.median(times) if times else 0.0,
        "decision_s_p95": percentile(times, 0.95),
        "other_invariant_failures": sum(1 for r in rows if r["invariants_failed"]),
        "not_approved_by": dict(Counter(r["decided_by"] for r in rows if r["decided_by"])),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 seeds per case")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per case (default 300)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args(argv)
    seeds = args.seeds or (30 if args.quick else 300)
    configure_logging(level="critical", stream=io.StringIO())
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        jobs = [(case, seed, out) for case in CASES for seed in range(seeds)]
        with multiprocessing.get_context("fork").Pool(args.workers) as pool:
            rows = pool.map(run_one, jobs, chunksize=8)
    elapsed = time.perf_counter() - started
    results: dict[str, Any] = {}
    table = Table(title=f"deploy decisions: {seeds} seeds per case "
                  f"(simulated time, {elapsed:.0f} s wall)", title_justify="left")
    for column in ("case", "faults", "seeds", "truth", "wrong at end", "exp. inconclusive",
                   "caught in a wave", "bad-version requests mean / p95",
                   "decision s median / p95", "other invariants failed"):
        table.add_column(column, justify="left" if column in ("case", "faults") else "right")
    for case in CASES:
        case_rows = [r for r in rows if r["case"] == case]
        results[case] = summary = summarize(case_rows)
        for label, part in (("all", case_rows),
                            ("clean", [r for r in case_rows if r["faults"] == "clean"]),
                            ("faults", [r for r in case_rows if r["faults"] == "faults"])):
            s = summarize(part)
            summary[label] = {k: s[k] for k in s if k.endswith("rate")}
            wrong = s.get("false_rejection_rate", s.get("miss_rate", 0.0))
            what = "false rej." if s["truth"] == "good" else "missed"
            table.add_row(case if label == "all" else "", label, str(s["seeds"]), s["truth"],
                          f"{what} {wrong:.1%}", f"{s['experiment_inconclusive']:.1%}",
                          f"{s['caught_in_wave']:.1%}",
                          f"{s['bad_exposure_mean']:,.0f} / {s['bad_exposure_p95']:,.0f}",
                          f"{s['decision_s_median']:.0f} / {s['decision_s_p95']:.0f}",
                          str(s["other_invariant_failures"]))
    goals = {}
    for case, (measure, limit) in GOALS.items():
        s = results[case]
        value = s["false_rejection_rate"] if measure == "false rejections" else s["miss_rate"]
        goals[case] = {"measure": measure, "value": value, "limit": limit,
                       "met": value <= limit}
    console = Console(file=sys.stdout, highlight=False, width=150)
    console.print(table)
    for case in CASES:
        by = results[case]["not_approved_by"]
        if by:
            console.print(f"{case}: not approved by " + ", ".join(
                f"{where} ({n})" for where, n in sorted(by.items())))
    for case, goal in goals.items():
        mark = "[green]met[/]" if goal["met"] else "[red]NOT met[/]"
        console.print(f"goal {case}: {goal['measure']} {goal['value']:.1%} "
                      f"<= {goal['limit']:.0%}: {mark}")
    print(json.dumps({"benchmark": "deploy_decisions", "seeds_per_case": seeds,
                      "elapsed_s": round(elapsed, 1), "analysis": ANALYSIS,
                      "cases": results, "goals": goals}))
    return 0 if all(g["met"] for g in goals.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
