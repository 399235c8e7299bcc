"""Strict queue through three tiers: durable originals/s vs an in-memory asyncio baseline.

The job (issue 4, "Performance"): N originals (default 200,000) over K keys
(default 10,000) through three tiers of queue clients on 4 queue servers,
SQLite store in a temp dir, the real clock:

- ``transform`` (map 1 -> 1, 4 clients): keys narrow 10,000 -> 2,000;
- ``summarize`` (reduce, windows of 50, 3 clients): keys narrow to 200;
- ``aggregate`` (reduce, windows of 20, 2 clients); the final step folds.

The durable runs go through the same code path as ``shardline run`` (a
``[queue]`` scenario parsed by the loader, run by the scenario runner with
``clock = "real"``), once with no faults and once with a crash of a client
of every tier every second (``[[faults]]`` crash on ``queue.<tier>-*``,
``every = "1s"``). Each run's invariants are checked by the scenario
(``strict_order``, ``exactly_once_contribution``, ``result_matches_oracle``):
a fast run that lost or doubled data is marked as failed, not counted.
Per-tier latency is from a message's enqueue into the tier's queue to its
ack by a client of that tier (``QueueMetrics``), p50 / p99.

The baseline is what one would write by hand without durability or a
ledger: three stages of ``asyncio.Queue``, each stage one queue per worker
(4 / 3 / 2 workers, same as the clients), a key always on the same worker
(so per-key order holds), the same built-in map/reduce functions, windows
and key narrowing, partial windows flushed when the input ends, the same
final fold, checked against the same oracle. It is the upper bound; the
report gives the durable run's share of it.

Prints a rich table, then one JSON line (last line of stdout).

    .venv/bin/python benchmarks/strict_queue_tiers.py --quick   # 20,000 originals
    .venv/bin/python benchmarks/strict_queue_tiers.py           # 200,000 originals
    .venv/bin/python benchmarks/strict_queue_tiers.py --repeat 3  # three rounds, medians
    .venv/bin/python benchmarks/strict_queue_tiers.py --profile --only clean
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import statistics
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from actors.queue import GeneratedSource, final_sums, make_map, make_reduce
from actors.queue._builtins import oracle, result_of
from actors.queue._source import generated_items
from runtime import configure_logging
from runtime.scenario import parse_scenario, percentile, run_scenario

TIERS: list[dict[str, Any]] = [
    {"name": "transform", "kind": "map", "clients": 4, "out_keys": 2000},
    {"name": "summarize", "kind": "reduce", "clients": 3, "window": 50, "out_keys": 200},
    {"name": "aggregate", "kind": "reduce", "clients": 2, "window": 20},
]
CHECKED = ("strict_order", "exactly_once_contribution", "result_matches_oracle")
GOAL_RATE = 100_000.0
GOAL_SHARE = 0.30
GOAL_CRASH = 0.90
SEED = 1


@dataclass
class Outcome:
    """One measured run (durable or baseline)."""

    label: str
    originals: int
    elapsed_s: float
    held: dict[str, bool]
    latency: dict[str, tuple[float, float]]
    """tier -> (p50, p99) seconds."""
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(self.held.values())

    @property
    def rate(self) -> float:
        return self.originals / self.elapsed_s if self.elapsed_s > 0 else 0.0


def scenario(records: int, keys: int, crash_every: float | None,
             visibility_timeout: float, tuning: dict[str, Any]) -> dict[str, Any]:
    """The ``[queue]`` scenario of one durable run, as a TOML file would hold it."""
    raw: dict[str, Any] = {
        "scenario": {"name": "strict-queue-tiers", "seed": SEED, "clock": "real",
                     "store": "sqlite:///{out}/state.db", "timeout": "20m"},
        "queue": {
            "servers": 4,
            "visibility_timeout": f"{visibility_timeout}s",
            "max_receives": 100,
            "source": {"records": records, "keys": keys},
            "tiers": TIERS,
            **tuning,
        },
        "expect": {"strict_order": True, "exactly_once_contribution": True,
                   "result_matches_oracle": True},
    }
    if crash_every is not None:
        raw["faults"] = [{"kind": "crash", "target": f"queue.{t['name']}-*",
                          "every": f"{crash_every}s"} for t in TIERS]
    return raw


def run_durable(label: str, raw: dict[str, Any], profile: bool) -> Outcome:
    loaded = parse_scenario(raw, f"<{label}>")
    profiler = cProfile.Profile() if profile else None
    with tempfile.TemporaryDirectory(prefix="shardline-bench-") as out:
        if profiler is not None:
            profiler.enable()
        report = run_scenario(loaded, out=out)
        if profiler is not None:
            profiler.disable()
            stats = io.StringIO()
            pstats.Stats(profiler, stream=stats).sort_stats("tottime").print_stats(40)
            print(stats.getvalue(), file=sys.stderr)
    m = report.metrics
    held = {i.name: i.held for i in report.invariants if i.name in (*CHECKED, "finished")}
    held["passed"] = report.passed
    latency = {t["name"]: (float(m[f"{t['name']}_latency_p50_s"]),
                           float(m[f"{t['name']}_latency_p99_s"])) for t in TIERS}
    counts = {k: int(m[k]) for k in ("restarts", "faults_injected", "redeliveries",
                                     "duplicates_dropped", "late_acks_refused",
                                     "windows_closed", "deliveries")}
    return Outcome(label, int(m["originals"]), float(m["elapsed_s"]), held, latency, counts)


# -- the in-memory baseline ------------------------------------------------------------

Item = tuple[float, str, bytes]
"""(enqueued at, key, body)"""
_END: Item = (0.0, "", b"")


def _worker_of(key: str, workers: int) -> int:
    return zlib.crc32(key.encode()) % workers


async def _baseline(records: int, keys: int) -> tuple[float, object, dict[str, list[float]]]:
    """Three partitioned asyncio.Queue stages; returns (elapsed s, result, latencies)."""
    clock = time.perf_counter
    stages = [[asyncio.Queue[Item](maxsize=1000) for _ in range(t["clients"])] for t in TIERS]
    finals: list[bytes] = []
    latencies: dict[str, list[float]] = {t["name"]: [] for t in TIERS}

    async def send(stage: int, key: str, body: bytes) -> None:
        if stage == len(TIERS):
            finals.append(body)
            return
        queues = stages[stage]
        await queues[_worker_of(key, len(queues))].put((clock(), key, body))

    async def end(stage: int) -> None:
        if stage < len(TIERS):
            for q in stages[stage]:
                await q.put(_END)

    async def map_worker(stage: int, q: asyncio.Queue[Item], fn: Callable[..., Any],
                         lat: list[float]) -> None:
        while True:
            item = await q.get()
            if item is _END:
                return
            at, key, body = item
            out_key, out = fn(key, body)
            lat.append(clock() - at)
            await send(stage + 1, out_key, out)

    async def reduce_worker(stage: int, q: asyncio.Queue[Item], fn: Callable[..., Any],
                            window: int, lat: list[float]) -> None:
        open_windows: dict[str, list[bytes]] = {}
        while True:
            item = await q.get()
            if item is _END:
                break
            at, key, body = item
            members = open_windows.setdefault(key, [])
            members.append(body)
            lat.append(clock() - at)
            if len(members) >= window:
                del open_windows[key]
                await send(stage + 1, *fn(key, members))
        for key, members in open_windows.items():  # input ended: flush partial windows
            await send(stage + 1, *fn(key, members))

    async def run_stage(stage: int) -> None:
        tier = TIERS[stage]
        lat = latencies[tier["name"]]
        if tier["kind"] == "map":
            map_fn = make_map(tier["name"], tier.get("out_keys"))
            workers = [map_worker(stage, q, map_fn, lat) for q in stages[stage]]
        else:
            reduce_fn = make_reduce(tier["name"], tier.get("out_keys"))
            workers = [reduce_worker(stage, q, reduce_fn, tier["window"], lat)
                       for q in stages[stage]]
        await asyncio.gather(*workers)
        await end(stage + 1)

    async def produce() -> None:
        for key, body in generated_items(GeneratedSource(records=records, keys=keys), SEED):
            await send(0, key, body)
        await end(0)

    started = clock()
    await asyncio.gather(produce(), *(run_stage(i) for i in range(len(TIERS))))
    result = final_sums(finals)
    return clock() - started, result, latencies


def run_baseline(records: int, keys: int) -> Outcome:
    elapsed, result, latencies = asyncio.run(_baseline(records, keys))
    expected = result_of(oracle(generated_items(GeneratedSource(records=records, keys=keys),
                                                SEED)))
    return Outcome("asyncio.Queue baseline (memory)", records, elapsed,
                   {"result_matches_oracle": result == expected},
                   {name: (percentile(lat, 0.5), percentile(lat, 0.99))
                    for name, lat in latencies.items()})


# -- report ---------------------------------------------------------------------------------

CLEAN = "durable, no faults"
CRASH = "durable, client crash"


def _goals(runs: list[Outcome], shares: dict[int, float]) -> dict[str, Any]:
    """The issue's goals on the medians of the rounds (a failed run counts as 0)."""
    clean = [r for r in runs if r.label.startswith(CLEAN)]
    crash = [r for r in runs if r.label.startswith(CRASH)]
    goals: dict[str, Any] = {}
    if not clean:
        return goals
    rate = statistics.median(r.rate if r.ok else 0.0 for r in clean)
    goals["rate"] = {"value": round(rate, 1), "goal": GOAL_RATE, "met": rate >= GOAL_RATE}
    clean_shares = [shares[id(r)] if r.ok else 0.0 for r in clean if id(r) in shares]
    if clean_shares:
        share = statistics.median(clean_shares)
        goals["share_of_baseline"] = {"value": round(share, 4), "goal": GOAL_SHARE,
                                      "met": share >= GOAL_SHARE}
    if crash and rate:
        ratio = statistics.median(r.rate if r.ok else 0.0 for r in crash) / rate
        goals["crash_of_no_fault"] = {"value": round(ratio, 4), "goal": GOAL_CRASH,
                                      "met": ratio >= GOAL_CRASH}
    return goals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 originals over 1,000 keys")
    parser.add_argument("--records", type=int, default=None, help="originals (default 200,000)")
    parser.add_argument("--keys", type=int, default=None, help="strict-order keys (10,000)")
    parser.add_argument("--crash-every", type=float, default=1.0,
                        help="seconds between crashes of a client of each tier")
    parser.add_argument("--visibility-timeout", type=float, default=2.0)
    parser.add_argument("--receive-batch", type=int, default=4_000,
                        help="messages per server per receive (every request costs the "
                             "one event loop a journal entry, a commit and its wake-ups: "
                             "500 per receive used about 30 %% more of its CPU per run)")
    parser.add_argument("--produce-chunk", type=int, default=40_000,
                        help="originals per producer enqueue (the producer has one chunk "
                             "out at a time: smaller chunks pace the run by its round trips)")
    parser.add_argument("--idle-poll", type=float, default=0.005,
                        help="seconds a client waits after an empty receive")
    parser.add_argument("--drain-poll", type=float, default=0.005,
                        help="seconds between the conductor's looks at the next tier")
    parser.add_argument("--only", choices=("clean", "crash", "baseline"), action="append",
                        help="run only these (repeatable)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds of (baseline, no faults, crashes), each share against "
                             "its own round's baseline; goals use the medians")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile the durable runs (top 40 by own time, to stderr)")
    args = parser.parse_args(argv)
    records = args.records or (20_000 if args.quick else 200_000)
    keys = args.keys or (1_000 if args.quick else 10_000)
    only = set(args.only or ("clean", "crash", "baseline"))
    configure_logging(level="critical", stream=io.StringIO())
    tuning = {"receive_batch": args.receive_batch, "produce_chunk": args.produce_chunk,
              "idle_poll": f"{args.idle_poll}s", "drain_poll": f"{args.drain_poll}s"}
    runs: list[Outcome] = []
    shares: dict[int, float] = {}
    """id of a durable run -> its share of the baseline of the same round."""
    for round_ in range(1, args.repeat + 1):
        tag = f" #{round_}" if args.repeat > 1 else ""
        baseline = run_baseline(records, keys) if "baseline" in only else None
        if baseline is not None:
            baseline.label += tag
            runs.append(baseline)
        if "clean" in only:
            runs.append(run_durable(CLEAN + tag, scenario(
                records, keys, None, args.visibility_timeout, tuning), args.profile))
        if "crash" in only:
            runs.append(run_durable(
                f"{CRASH} every {args.crash_every:g} s per tier{tag}",
                scenario(records, keys, args.crash_every, args.visibility_timeout, tuning),
                args.profile))
        if baseline is not None and baseline.rate:
            for r in runs:
                if not r.label.startswith("asyncio") and r.label.endswith(tag):
                    shares[id(r)] = r.rate / baseline.rate

    table = Table(title=f"strict queue, 3 tiers: {records:,} originals over {keys:,} keys, "
                        "4 servers, SQLite, real clock", title_justify="left")
    for column in ("run", "originals/s", "elapsed s", "of baseline",
                   *(f"{t['name']} p50/p99 ms" for t in TIERS), "invariants", "restarts"):
        table.add_column(column, justify="left" if column in ("run", "invariants") else "right")
    for r in runs:
        share = (f"{shares[id(r)]:.0%}" if id(r) in shares else
                 "100%" if r.label.startswith("asyncio") else "-")
        marks = ", ".join(f"{name} {'ok' if ok else 'FAILED'}" for name, ok in r.held.items()
                          if name in CHECKED)
        table.add_row(r.label, f"{r.rate:,.0f}" if r.ok else f"({r.rate:,.0f}) FAILED",
                      f"{r.elapsed_s:.2f}", share,
                      *(f"{r.latency[t['name']][0] * 1e3:,.1f} / "
                        f"{r.latency[t['name']][1] * 1e3:,.1f}" for t in TIERS),
                      marks, str(r.counts.get("restarts", "-")))
    goals = _goals(runs, shares)
    console = Console(file=sys.stdout, highlight=False, width=190)
    console.print(table)
    for name, goal in goals.items():
        mark = "[green]met[/]" if goal["met"] else "[red]NOT met[/]"
        console.print(f"goal {name}: {goal['value']:,} (goal >= {goal['goal']:,}): {mark}")
    print(json.dumps({
        "benchmark": "strict_queue_tiers", "originals": records, "keys": keys, "servers": 4,
        "tiers": TIERS, "visibility_timeout_s": args.visibility_timeout,
        "crash_every_s": args.crash_every, "tuning": tuning,
        "runs": [{"run": r.label, "originals_per_s": round(r.rate, 1),
                  "elapsed_s": round(r.elapsed_s, 3), "invariants": r.held,
                  "share_of_baseline": round(shares[id(r)], 4) if id(r) in shares else None,
                  "latency_s": {name: {"p50": round(p50, 6), "p99": round(p99, 6)}
                                for name, (p50, p99) in r.latency.items()},
                  **r.counts} for r in runs],
        "goals": goals}))
    return 0 if all(r.ok for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
