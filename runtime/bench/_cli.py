"""``shardline bench faults``: parse the sweep, run it with a progress bar, draw, report.

Exit codes as ``shardline run``: 0 every run held its invariants, 1 at least
one correctness failure (listed first in the report), 2 bad input (a
message naming the option or file and what was expected).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import msgspec
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from runtime._errors import ScenarioError, StoreError
from runtime._faults import ACTOR_FAULT_KINDS
from runtime.bench._kinds import KINDS
from runtime.bench._point import PointSettings
from runtime.bench._records import Point, RunRecord, SampleRow
from runtime.bench._sweep import SweepResult, SweepSpec, Target, run_sweep
from runtime.scenario import load_scenario, parse_duration

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
SYSTEMS = ("stream", "queue", "log", "deploy")


class BadInput(Exception):
    """A usage error: exit 2 with this message."""


BENCH_EXTRA = ("tomli_w", "matplotlib", "markdown_it")
"""Modules of the ``[bench]`` extra a sweep needs, checked before it runs anything."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="shardline bench faults",
        description="Sweep fault kinds x rates x seeds over scenario runs; write samples, "
                    "runs, plots and a report.")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--system", action="append", choices=SYSTEMS,
                       help="a built-in system scenario (repeatable)")
    which.add_argument("--all", action="store_true", help="every built-in system")
    which.add_argument("--scenario", action="append", help="your scenario file (repeatable)")
    which.add_argument("--redraw", action="store_true",
                       help="only redraw the figures and report of the sweep in --out")
    p.add_argument("--faults", default=None,
                   help=f"comma-separated fault kinds (default crash); known: {', '.join(KINDS)}")
    p.add_argument("--rates", default=None,
                   help="faults per second, comma-separated (default 0,0.5,2,5); 0 is always run")
    p.add_argument("--seeds", type=int, default=None, help="seeds per point (default 3)")
    p.add_argument("--clock", choices=("real", "simulated"), default="real")
    p.add_argument("--quick", action="store_true",
                   help="rates 0 and 2, one seed, crash only (unless given)")
    p.add_argument("--bucket", default="100ms", help="sample bucket width (default 100ms)")
    p.add_argument("--recover-within", default="2s",
                   help="metastability: time allowed after the last fault (default 2s)")
    p.add_argument("--out", required=True, help="output directory")
    return p


def _rates(text: str) -> list[float]:
    try:
        rates = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise BadInput(f"--rates: expected numbers such as 0,0.5,2, got {text!r}") from None
    if not rates or any(r < 0 or r != r or r == float("inf") for r in rates):
        raise BadInput(f"--rates: expected non-negative finite numbers, got {text!r}")
    return sorted({0.0, *rates})


def _duration(option: str, text: str) -> float:
    try:
        value = float(parse_duration(text))
    except ValueError as exc:
        raise BadInput(f"{option}: {exc}") from None
    if value <= 0:
        raise BadInput(f"{option}: expected a positive duration, got {text!r}")
    return value


def _targets(args: argparse.Namespace, builtin: dict[str, Path]) -> list[Target]:
    if args.scenario:
        targets = []
        for file in args.scenario:
            loaded = load_scenario(file)
            targets.append(Target(loaded.system.section, str(file)))
        return targets
    names = SYSTEMS if args.all else list(dict.fromkeys(args.system))
    missing = [n for n in names if n not in builtin]
    if missing:
        raise BadInput(f"no built-in bench scenario for {', '.join(missing)} "
                       "(expected scenarios/bench_<system>.toml beside benchmarks/)")
    return [Target(n, str(builtin[n])) for n in names]


def _check_kinds(targets: list[Target], faults: list[str]) -> None:
    for target in targets:
        loaded = load_scenario(target.scenario)
        node_kinds = [k for k, kind in KINDS.items() if kind.node] \
            if loaded.header.nodes else []
        known = [*ACTOR_FAULT_KINDS, "store_error", *loaded.system.fault_kinds, *node_kinds]
        for kind in faults:
            if kind not in known:
                hint = (" (a node fault: it needs a scenario that runs across nodes, "
                        "[scenario] nodes = N)") if kind in KINDS and KINDS[kind].node else ""
                raise BadInput(f"--faults: kind {kind!r} is not available for system "
                               f"{target.system!r}{hint}; expected one of: {', '.join(known)}")


def build_spec(args: argparse.Namespace, builtin: dict[str, Path]) -> SweepSpec:
    faults = [f.strip() for f in (args.faults or "crash").split(",") if f.strip()]
    if not faults:
        raise BadInput("--faults: expected at least one fault kind")
    rates = _rates(args.rates or ("0,2" if args.quick else "0,0.5,2,5"))
    seeds = args.seeds if args.seeds is not None else (1 if args.quick else 3)
    if seeds < 1:
        raise BadInput(f"--seeds: expected at least 1, got {seeds}")
    targets = _targets(args, builtin)
    _check_kinds(targets, faults)
    settings = PointSettings(clock=args.clock, bucket=_duration("--bucket", args.bucket),
                             recover_within=_duration("--recover-within", args.recover_within),
                             user_scenario=bool(args.scenario))
    return SweepSpec(targets, faults, rates, list(range(1, seeds + 1)), settings)


def main(argv: Sequence[str] | None = None, builtin: dict[str, Path] | None = None) -> int:
    """Run the sweep ``argv`` describes; ``builtin`` maps systems to their bench scenarios."""
    args = _parser().parse_args(argv)
    command = f"shardline bench faults {' '.join(argv if argv is not None else sys.argv[1:])}"
    out = Path(args.out)
    missing = [name for name in BENCH_EXTRA if importlib.util.find_spec(name) is None]
    if missing:
        return _error(f"the sweep needs {', '.join(missing)} (scenario files, figures, the "
                      "HTML report): install the bench extra with pip install -e '.[bench]'")
    from runtime.bench._plots import draw_system
    from runtime.bench._report import write_report

    if args.redraw:
        try:
            result = read_sweep(out)
        except (OSError, msgspec.ValidationError, msgspec.DecodeError) as exc:
            return _error(f"--redraw: cannot read the sweep in {out}: {exc}")
        note = f"Redrawn by `{command}` from `runs.jsonl` and `samples.jsonl`."
    else:
        try:
            spec = build_spec(args, builtin or {})
        except (BadInput, ScenarioError) as exc:
            return _error(str(exc))
        started = time.time()
        try:
            result = _run_with_progress(spec, out)
        except (ScenarioError, StoreError) as exc:
            return _error(str(exc))
        note = (f"`{command}`: {len(result.runs)} runs in {time.time() - started:.0f} s, "
                f"clock {spec.settings.clock}.")
    widths = sorted(s.width for s in result.samples) or [0.1]
    bucket = widths[len(widths) // 2]
    images = {}
    for system in dict.fromkeys(r.system for r in result.runs):
        images[system] = draw_system(system, [r for r in result.runs if r.system == system],
                                     [s for s in result.samples if s.system == system],
                                     out / "plots", bucket)
    header = [
        "# Shardline failure-injection sweep", "",
        f"{note} Buckets of {bucket * 1000:.0f} ms. Faults fire in a window from 20 % to "
        "60 % of the same seed's no-fault run, at the given rate (at least once). Samples come "
        "from the runtime's sampler reading each system's own counters; recovery times have "
        "the resolution of one bucket (0.00 s: back within the fault's own bucket).",
    ]
    md, html = write_report(result.runs, images, out, header)
    failed = [r for r in result.runs if not r.correct]
    for record in failed:
        print(f"CORRECTNESS FAILURE {record.run}: replay with: {record.replay}", file=sys.stderr)
    print(f"{len(result.runs)} runs, {len(failed)} correctness failures; report {md} and {html}")
    return EXIT_FAILED if failed else EXIT_OK


def _error(message: str) -> int:
    print(f"shardline bench faults: error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def read_sweep(out: Path) -> SweepResult:
    """The runs and samples a sweep wrote to ``out``."""
    runs = [msgspec.json.decode(line, type=RunRecord)
            for line in (out / "runs.jsonl").read_bytes().splitlines() if line.strip()]
    rows = [msgspec.json.decode(line, type=SampleRow)
            for line in (out / "samples.jsonl").read_bytes().splitlines() if line.strip()]
    return SweepResult(runs, rows)


def _run_with_progress(spec: SweepSpec, out: Path) -> SweepResult:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn())
    with Progress(*columns, transient=False, disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task("sweep", total=spec.total())

        def show(point: Point, record: RunRecord | None) -> None:
            if record is None:
                bar.update(task, description=f"{point.run_id:<28}")
            else:
                bar.advance(task)

        return run_sweep(spec, out, show)
