"""Scale-out: stream and queue throughput on 1, 2 and 4 node processes, and recovery
after ``kill_node``, on PostgreSQL.

Each run is ``shardline run <scenario> --nodes N --store postgresql://...``
through the runtime API (``run_scenario``) in this process, which is the run's
driver; the nodes are ``shardline node`` processes on loopback, a fresh schema
per run. The scenarios are in ``benchmarks/scenarios/``:

- ``scale_stream.toml``: 2,000,000 records over 8 partitions, produced as
  fast as they are taken; throughput = records committed per second.
- ``scale_queue.toml``: 120,000 originals through a map and a reduce tier,
  no rate; throughput = messages acked per second (both tiers).
- ``scale_stream_kill.toml`` / ``scale_queue_kill.toml``: 2 nodes, a fixed
  offered rate, ``node-1`` SIGKILLed 8 s after the nodes are up (fault times
  count from then: ``FaultInjector.install(origin=)``), not restarted.

Figures, each from the run's samples (``[scenario] samples = "250ms"``):

- **throughput**: over the steady window (``_sample_windows.steady``: from
  the end of the first bucket with progress to the end of the last), and the
  report's own figure (``throughput_*_per_s``: over the whole run, start-up
  included) beside it. A system whose samples show no progress while it runs
  stops the benchmark with an error (its probe would count at the end only;
  the queue's across nodes replays the servers' journals each sample).
- **CPU** over the same window, read at every sample: each node process's
  (``/proc``, by its ``--name``), the driver's (this process:
  ``time.process_time``) and, when this script started the server, the
  PostgreSQL server's (postmaster and backends). *Per node-CPU-second* is
  the units of the window over the nodes' CPU seconds: what a node costs per
  unit of work. Where the driver still hosts the workers (main before the
  systems ran on nodes) it is meaningless (the nodes idle), so *per CPU-second*
  (nodes + driver) and *node share* (nodes / (nodes + driver)) are given too.
  The nodes' own figure (the report's ``nodes.*.cpu_s``, since each process
  started, start-up included) is kept in the JSON.
- **recovery**: from the kill (its fault event in the samples) to the end of
  the first bucket whose smoothed throughput (three buckets) is back at
  >= 90 % of the steady throughput before the kill (``_sample_windows``,
  the faults sweeps' definition). Goal: <= lease TTL + 2 s.

Runs ``--repeat`` rounds (default 3); in each round the node counts alternate
(1, 2, 4, then the next round), each with stream then queue, then one
recovery run per system; every run is quoted. ``--quick`` (a test runs it):
2 nodes, small workloads, one round, no recovery run (``--recovery stream``
adds one: ~10 s more).
Prints a table, then one JSON line (the last line of stdout).

    .venv/bin/python benchmarks/scale_out.py
    .venv/bin/python benchmarks/scale_out.py --repeat 1 --nodes 1,2 --systems stream
    .venv/bin/python benchmarks/scale_out.py --quick --store postgresql://...
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from _cpu import NodeCpu, ServerCpu  # noqa: E402
from _sample_windows import THRESHOLD, faults_of, recovery, steady  # noqa: E402
from _stores import fresh_store  # noqa: E402

import runtime  # noqa: E402
from runtime.scenario import LoadedScenario, Sample, load_scenario, run_scenario  # noqa: E402
from runtime.scenario._nodes import NODE_LEASE_TTL  # noqa: E402

SCENARIOS = ROOT / "benchmarks" / "scenarios"
SYSTEMS = ("stream", "queue")
RECOVERY_GOAL = NODE_LEASE_TTL + 2.0
IDLE_NODES = 0.05
"""Nodes using less than this share of a core are idle (the driver does the work):
the table shows no per-node-CPU-second figure for them."""
QUICK = {"stream": 400_000, "queue": 15_000}
"""--quick: source records per system (throughput runs): enough for a few busy
sample buckets on a loaded machine (a run over in one bucket has no steady window)."""
KILL_WINDOW = {"full": (8.0, 10.0), "quick": (4.0, 4.0)}
"""Seconds before and after the kill of a recovery run: the kill's ``at`` (counted
from when the nodes are up) and the work offered after it; the source is sized to
the offered rate x (``at`` + the seconds after)."""


def resized(loaded: LoadedScenario, records: int | None,
            kill_at: float | None = None) -> LoadedScenario:
    """``loaded`` with ``records`` source records and its faults at ``kill_at``."""
    config = loaded.config
    if records is not None:
        config = msgspec.structs.replace(
            config, source=msgspec.structs.replace(config.source, records=records))
    faults = loaded.faults if kill_at is None else [
        msgspec.structs.replace(f, at=kill_at) for f in loaded.faults]
    return msgspec.structs.replace(loaded, config=config, faults=faults)


class Reading(msgspec.Struct, frozen=True):
    """CPU seconds read at one sample: the driver, each node, the store server."""

    driver: float
    nodes: dict[str, float]
    server: float | None


def one_run(loaded: LoadedScenario, nodes: int | None, base: str,
            server: ServerCpu | None) -> tuple[runtime.scenario.Report, list[Sample],
                                               list[Reading]]:
    """Run ``loaded`` across ``nodes`` node processes on a fresh schema of ``base``."""
    samples: list[Sample] = []
    readings: list[Reading] = []
    node_cpu = NodeCpu()
    reading_cost = 0.0  # this process's CPU spent reading /proc, not the driver's work

    def on_sample(sample: Sample) -> None:
        nonlocal reading_cost
        samples.append(sample)
        now = time.process_time()
        readings.append(Reading(now - reading_cost, node_cpu.read(),
                                server.read() if server is not None else None))
        reading_cost += time.process_time() - now

    with tempfile.TemporaryDirectory(prefix="shardline-scale-") as out, \
            fresh_store("postgresql", base) as url:
        report = run_scenario(loaded, store=url, out=out, nodes=nodes, on_sample=on_sample)
    return report, samples, readings


class ThroughputRun(msgspec.Struct, frozen=True):
    """One throughput run; CPU figures over the steady window (seconds)."""

    system: str
    nodes: int
    passed: bool
    start_up_s: float
    """From the run's start to the work's (nodes started, system set up)."""
    unit: str
    throughput: float
    report_throughput: float
    window_s: float
    units: int
    node_cpu_s: float
    node_cpu_by_node: dict[str, float]
    driver_cpu_s: float
    server_cpu_s: float | None
    per_node_cpu_s: float | None
    per_cpu_s: float
    node_share: float
    report_node_cpu_s: dict[str, float | None]


class RecoveryRun(msgspec.Struct, frozen=True):
    """One run with a ``kill_node``: throughput (units/s) before, lowest, recovery time."""

    system: str
    nodes: int | None
    passed: bool
    unit: str
    kill_at: float
    """The fault's ``at``; ``kill_t`` is when the samples saw it (runtime clock)."""
    kill_t: float | None
    before: float | None
    lowest: float | None
    recovery_s: float | None
    note: str = ""
    """Why there is no recovery figure, when the run could not give one."""


def throughput_run(system: str, nodes: int, base: str, server: ServerCpu | None,
                   records: int | None) -> ThroughputRun:
    loaded = resized(load_scenario(SCENARIOS / f"scale_{system}.toml"), records)
    report, samples, readings = one_run(loaded, nodes, base, server)
    window = steady(samples)
    if window is None:
        raise SystemExit(f"{system} on {nodes} node(s): its {len(samples)} samples show "
                         "no progress during the run (fewer than two buckets in which work "
                         "completed), so there is no throughput to measure")
    first, last, units = window.first, window.last, window.completed
    seconds = samples[last].t - samples[first].t
    start, end = readings[first], readings[last]
    node_cpu = {n: end.nodes[n] - start.nodes[n] for n in end.nodes if n in start.nodes}
    nodes_s, driver_s = sum(node_cpu.values()), end.driver - start.driver
    server_s = end.server - start.server \
        if end.server is not None and start.server is not None else None
    metric = next(v for k, v in report.metrics.items() if k.startswith("throughput_"))
    tallies = msgspec.convert(report.extra.get("nodes", {}), dict[str, dict[str, object]])
    return ThroughputRun(
        system=system, nodes=nodes, passed=report.passed,
        start_up_s=samples[0].t - samples[0].width,
        unit=str(report.extra.get("throughput_unit", "")),
        throughput=units / seconds, report_throughput=float(metric),
        window_s=seconds, units=units,
        node_cpu_s=nodes_s, node_cpu_by_node=node_cpu, driver_cpu_s=driver_s,
        server_cpu_s=server_s,
        per_node_cpu_s=units / nodes_s if nodes_s > 0 else None,
        per_cpu_s=units / (nodes_s + driver_s),
        node_share=nodes_s / (nodes_s + driver_s),
        report_node_cpu_s={n: t.get("cpu_s") for n, t in tallies.items()},  # type: ignore[misc]
    )


def recovery_run(system: str, base: str, server: ServerCpu | None,
                 quick: bool) -> RecoveryRun:
    loaded = load_scenario(SCENARIOS / f"scale_{system}_kill.toml")
    at, after = KILL_WINDOW["quick" if quick else "full"]
    loaded = resized(loaded, int(loaded.config.rate * (at + after)), at)
    report, samples, _ = one_run(loaded, None, base, server)
    kills = faults_of(samples, "kill_node")
    found = recovery(samples, kills[0]) if kills else None
    note = "" if found is not None else "no kill_node seen during the work" if not kills \
        else "no progress in the samples before the kill"
    return RecoveryRun(
        system=system, nodes=loaded.header.nodes, passed=report.passed,
        unit=str(report.extra.get("throughput_unit", "")), kill_at=at,
        kill_t=kills[0].t if kills else None,
        before=found.before if found else None, lowest=found.lowest if found else None,
        recovery_s=found.seconds if found else None, note=note)


def table(runs: list[ThroughputRun], recoveries: list[RecoveryRun]) -> None:
    print(f"{'system':<8}{'nodes':>6}{'units/s':>12}{'/node-CPU-s':>13}{'/CPU-s':>10}"
          f"{'node share':>12}{'PG CPU-s/s':>12}   every run (units/s)")
    for system in dict.fromkeys(r.system for r in runs):
        for count in sorted({r.nodes for r in runs}):
            mine = [r for r in runs if r.system == system and r.nodes == count]
            per_node = [r.per_node_cpu_s for r in mine if r.per_node_cpu_s is not None]
            idle = median([r.node_cpu_s / r.window_s for r in mine]) < IDLE_NODES
            pg = [r.server_cpu_s / r.window_s for r in mine if r.server_cpu_s is not None]
            shown_per_node = "(idle)" if idle else f"{median(per_node):,.0f}"
            print(f"{system:<8}{count:>6}{median([r.throughput for r in mine]):>12,.0f}"
                  f"{shown_per_node:>13}{median([r.per_cpu_s for r in mine]):>10,.0f}"
                  f"{median([r.node_share for r in mine]):>12.0%}"
                  f"{median(pg) if pg else float('nan'):>12.2f}   "
                  + ", ".join(f"{r.throughput:,.0f}" + ("" if r.passed else " (FAILED)")
                              for r in mine))
    for system in dict.fromkeys(r.system for r in recoveries):
        shown = ", ".join((f"not measured ({r.note})" if r.note else "not recovered"
                           if r.recovery_s is None else f"{r.recovery_s:.2f} s")
                          + ("" if r.passed else " (FAILED)")
                          for r in recoveries if r.system == system)
        print(f"{system:<8} recovery to {THRESHOLD:.0%} after kill_node "
              f"(goal <= {RECOVERY_GOAL:g} s): {shown}")


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def finite(value: float) -> float | None:
    """``value``, or None for NaN (JSON has no NaN)."""
    return None if math.isnan(value) else value


def measure(base: str, server: ServerCpu | None, args: argparse.Namespace) -> int:
    runs: list[ThroughputRun] = []
    recoveries: list[RecoveryRun] = []
    for round_ in range(args.repeat):
        for count in args.nodes:
            for system in args.systems:
                began = time.perf_counter()
                run = throughput_run(system, count, base, server,
                                     QUICK[system] if args.quick else None)
                runs.append(run)
                print(f"round {round_ + 1}: {system} on {count} node(s) "
                      f"({time.perf_counter() - began:.1f} s, start-up {run.start_up_s:.1f} s): "
                      f"{run.throughput:,.0f} {run.unit}/s, node CPU {run.node_cpu_s:.2f} s, "
                      f"driver CPU {run.driver_cpu_s:.2f} s"
                      + ("" if run.passed else ", INVARIANTS FAILED"), file=sys.stderr)
        for system in args.recovery:
            rec = recovery_run(system, base, server, args.quick)
            recoveries.append(rec)
            print(f"round {round_ + 1}: {system} recovery {rec.recovery_s} s after the kill "
                  f"at {rec.kill_t} s (before {rec.before} {rec.unit}/s, lowest "
                  f"{rec.lowest}) {rec.note}", file=sys.stderr)
    table(runs, recoveries)
    times = [r.recovery_s for r in recoveries]
    result = {
        "benchmark": "scale_out", "quick": args.quick, "repeat": args.repeat,
        "nodes": args.nodes, "systems": args.systems,
        "runs": msgspec.to_builtins(runs), "recovery": msgspec.to_builtins(recoveries),
        "median": {s: {str(n): {
            "throughput": finite(median([r.throughput for r in runs
                                         if r.system == s and r.nodes == n])),
            "per_node_cpu_s": finite(median([r.per_node_cpu_s for r in runs
                                             if r.system == s and r.nodes == n
                                             and r.per_node_cpu_s is not None])),
            "per_cpu_s": finite(median([r.per_cpu_s for r in runs
                                        if r.system == s and r.nodes == n])),
            "node_share": finite(median([r.node_share for r in runs
                                         if r.system == s and r.nodes == n])),
        } for n in args.nodes} for s in args.systems},
        "lease_ttl": NODE_LEASE_TTL, "goals": {"recovery_s": RECOVERY_GOAL},
        "met": {"recovery": bool(times) and all(t is not None and t <= RECOVERY_GOAL
                                                for t in times)},
        "passed": all(r.passed for r in runs) and all(r.passed for r in recoveries),
    }
    print(json.dumps(result))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    runtime.configure_logging(level="error", stream=sys.stderr)
    # SIGTERM unwinds like Ctrl-C, so the nodes and the throwaway server are stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--nodes", type=lambda v: [int(n) for n in v.split(",")],
                        default=None, help="node counts, comma-separated (default 1,2,4)")
    parser.add_argument("--systems", type=lambda v: [s for s in v.split(",") if s],
                        default=list(SYSTEMS), help="throughput runs (default stream,queue)")
    parser.add_argument("--recovery", type=lambda v: [s for s in v.split(",") if s],
                        default=None, help="systems whose recovery is measured "
                        "(default: --systems; --quick: none)")
    parser.add_argument("--repeat", type=int, default=None, help="rounds (default 3)")
    parser.add_argument("--quick", action="store_true",
                        help="2 nodes, small workloads, one round, no recovery run")
    parser.add_argument("--store", help="postgresql:// URL of a server of one's own")
    args = parser.parse_args(argv)
    args.nodes = args.nodes or ([2] if args.quick else [1, 2, 4])
    args.repeat = args.repeat or (1 if args.quick else 3)
    if args.recovery is None:
        args.recovery = [] if args.quick else args.systems
    if args.store:
        return measure(args.store, None, args)
    sys.path.insert(0, str(ROOT / "tests"))
    from _postgres import ThrowawayPostgres

    with ThrowawayPostgres(durable=True) as server:
        postmaster = int((server.data / "postmaster.pid").read_text().split()[0])
        return measure(server.url("bench_scale"), ServerCpu(postmaster), args)


if __name__ == "__main__":
    sys.exit(main())
