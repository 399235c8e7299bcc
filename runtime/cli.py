"""The ``shardline`` command.

Exit codes: 0 every expectation held; 1 an invariant failed; 2 bad input
(usage, scenario file, store URL), with a message naming the file, the field
and what was expected. Events go to ``<out>/events.jsonl`` so the terminal
shows progress and the report, and ``--json`` prints only the JSON object.
Systems may add subcommands through the ``shardline.commands`` entry-point
group (a callable that receives the argparse sub-parsers).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import TextIO

from runtime._errors import ScenarioError, StoreError
from runtime._logging import configure_logging
from runtime.scenario import (
    default_out_dir,
    load_scenario,
    print_report,
    run_scenario,
)

EXIT_OK, EXIT_INVARIANT, EXIT_BAD_INPUT = 0, 1, 2


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shardline", description="Run Shardline scenarios, servers and benchmarks.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a scenario file and check its invariants")
    run.add_argument("file", help="scenario file (TOML)")
    run.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    run.add_argument("--store", default=None,
                     help="store URL (memory://, sqlite:///path.db, "
                          "postgresql://user@host:port/db?schema=name)")
    run.add_argument("--out", default=None, help="output directory (default out/<scenario>)")
    run.add_argument("--json", action="store_true", help="print only the JSON report on stdout")
    run.add_argument("--log-level", default="info",
                     help="level of events written to <out>/events.jsonl (default info)")
    run.set_defaults(handler=_cmd_run)
    validate = sub.add_parser("validate", help="check a scenario file without running it")
    validate.add_argument("file")
    validate.set_defaults(handler=_cmd_validate)
    bench = sub.add_parser("bench", help="run a benchmark script from benchmarks/")
    bench.add_argument("name", nargs="?", help="benchmark name (omit to list them)")
    bench.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the benchmark")
    bench.set_defaults(handler=_cmd_bench)
    for ep in entry_points(group="shardline.commands"):
        try:
            register: Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None] = (
                ep.load())
            register(sub)
        except Exception as exc:  # a broken plugin must not take `run` down with it
            print(f"shardline: warning: command {ep.name!r} ({ep.value}) failed to load: {exc}",
                  file=sys.stderr)
    return parser


def _error(message: str) -> int:
    print(f"shardline: error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _cmd_validate(args: argparse.Namespace) -> int:
    try:
        loaded = load_scenario(args.file)
    except ScenarioError as exc:
        return _error(str(exc))
    print(f"{args.file}: valid {loaded.system.section} scenario {loaded.header.name!r}")
    return EXIT_OK


def _progress_printer(stream: TextIO) -> Callable[[int, int | None, str], None]:
    def show(done: int, total: int | None, note: str) -> None:
        pct = f" {100.0 * done / total:5.1f}%" if total else ""
        stream.write(f"\r  {done:,}{'/' + format(total, ',') if total else ''}{pct} {note}\x1b[K")
        stream.flush()

    return show


def _cmd_run(args: argparse.Namespace) -> int:
    try:
        loaded = load_scenario(args.file)
    except ScenarioError as exc:
        return _error(str(exc))
    out_dir = Path(args.out) if args.out else default_out_dir(loaded)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        log_stream = (out_dir / "events.jsonl").open("a", encoding="utf-8")
    except OSError as exc:
        return _error(f"--out {out_dir}: cannot create output directory: {exc}")
    with log_stream:
        configure_logging(json=True, level=args.log_level, stream=log_stream)
        interactive = not args.json and sys.stderr.isatty()
        progress = _progress_printer(sys.stderr) if interactive else None
        try:
            report = run_scenario(loaded, seed=args.seed, store=args.store, out=out_dir,
                                  progress=progress)
        except (ScenarioError, StoreError) as exc:
            return _error(f"{args.file}: {exc}")
        if interactive:
            sys.stderr.write("\r\x1b[K")
    if args.json:
        sys.stdout.write(report.to_json().decode() + "\n")
    else:
        print_report(report)
    return EXIT_OK if report.passed else EXIT_INVARIANT


def _benchmarks_dir() -> Path | None:
    beside_package = Path(__file__).resolve().parents[1] / "benchmarks"
    for candidate in (Path.cwd() / "benchmarks", beside_package):
        if candidate.is_dir():
            return candidate
    return None


def _cmd_bench(args: argparse.Namespace) -> int:
    folder = _benchmarks_dir()
    if folder is None:
        return _error("no benchmarks/ directory here or beside the installed package")
    names = sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_"))
    if not args.name:
        print("benchmarks: " + ", ".join(names))
        return EXIT_OK
    if args.name not in names:
        return _error(f"unknown benchmark {args.name!r}; expected one of: {', '.join(names)}")
    return subprocess.call([sys.executable, str(folder / f"{args.name}.py"), *args.args])


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
