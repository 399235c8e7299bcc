"""The ``shardline`` command.

Exit codes: 0 every expectation held; 1 an invariant failed; 2 bad input
(usage, scenario file, store URL, a store made for another scenario), with a
message naming the file, the field and what was expected; 130 interrupted
(Ctrl-C: the store is left as a crash would leave it, so running the same
command again resumes). No command prints a Python traceback for bad input.
Events go to ``<out>/events.jsonl`` so the terminal shows progress and the
report, and ``--json`` prints only the JSON object (one line per scenario).
Systems may add subcommands through the ``shardline.commands`` entry-point
group (a callable that receives the argparse sub-parsers).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, entry_points, version
from pathlib import Path
from typing import TextIO

import msgspec

from runtime._errors import ScenarioError, StoreError
from runtime._logging import configure_logging
from runtime._node_cli import add_node_parser, read_secret
from runtime._simloop import loop_choice
from runtime.cluster._config import split_address
from runtime.scenario import (
    LoadedScenario,
    default_out_dir,
    load_scenario,
    print_report,
    run_scenario,
)
from runtime.scenario._catalog import shipped_dir, shipped_scenarios, system_catalog
from runtime.scenario._fresh import clear_run
from runtime.scenario._join import JoinOptions

EXIT_OK, EXIT_INVARIANT, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def _version() -> str:
    try:
        return version("shardline")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown (not installed)"


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shardline", description="Run Shardline scenarios, servers and benchmarks.")
    parser.add_argument("--version", action="version", version=f"shardline {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run scenario files and check their invariants")
    run.add_argument("files", nargs="+", metavar="FILE", help="scenario files (TOML)")
    run.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    run.add_argument("--store", default=None,
                     help="store URL (memory://, sqlite:///path.db, "
                          "postgresql://user@host:port/db?schema=name; {out} is the output dir)")
    run.add_argument("--out", default=None,
                     help="output directory (default out/<scenario>; with several files, "
                          "each scenario uses OUT/<scenario>)")
    run.add_argument("--fresh", action="store_true",
                     help="delete this run's store and output first instead of resuming")
    run.add_argument("--json", action="store_true", help="print only the JSON report on stdout")
    run.add_argument("--nodes", type=int, default=None, metavar="N",
                     help="run across N node processes node-1..node-N on loopback (real "
                          "clock) or N simulated nodes (simulated clock); needs a "
                          "postgresql:// store")
    run.add_argument("--join", action="store_true",
                     help="drive the scenario through the live `shardline node` processes "
                          "of the --store's cluster (starts none); needs the cluster secret")
    secret = run.add_mutually_exclusive_group()
    secret.add_argument("--secret-file", help="with --join: file holding the cluster secret")
    secret.add_argument("--secret-env", metavar="VAR",
                        help="with --join: environment variable holding the cluster secret")
    run.add_argument("--listen", default=None, metavar="HOST:PORT",
                     help="with --join: where the nodes reach this run (default 127.0.0.1:0)")
    run.add_argument("--clock", default=None, choices=("real", "simulated"),
                     help="override [scenario] clock: real runs --nodes N as node processes "
                          "(default: the scenario's clock; with --join, real)")
    run.add_argument("--log-level", default="info", choices=LOG_LEVELS,
                     help="level of events written to <out>/events.jsonl (default info)")
    run.set_defaults(handler=_cmd_run)
    validate = sub.add_parser("validate", help="check scenario files without running them")
    validate.add_argument("files", nargs="+", metavar="FILE")
    validate.set_defaults(handler=_cmd_validate)
    listing = sub.add_parser("list", help="list the shipped scenarios and installed systems")
    listing.set_defaults(handler=_cmd_list)
    bench = sub.add_parser("bench", help="run a benchmark script from benchmarks/")
    bench.add_argument("name", nargs="?", help="benchmark name (omit to list them)")
    bench.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the benchmark")
    bench.set_defaults(handler=_cmd_bench)
    add_node_parser(sub)
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


def _load_all(files: Sequence[str]) -> list[LoadedScenario] | None:
    """Every file loaded, or ``None`` after printing each one's error."""
    loaded: list[LoadedScenario] = []
    failed = False
    for file in files:
        try:
            loaded.append(load_scenario(file))
        except ScenarioError as exc:
            _error(str(exc))
            failed = True
    return None if failed else loaded


def _cmd_validate(args: argparse.Namespace) -> int:
    code = EXIT_OK
    for file in args.files:
        try:
            loaded = load_scenario(file)
        except ScenarioError as exc:
            code = _error(str(exc))
            continue
        print(f"{file}: valid {loaded.system.section} scenario {loaded.header.name!r}")
    return code


def _progress_printer(stream: TextIO) -> Callable[[int, int | None, str], None]:
    def show(done: int, total: int | None, note: str) -> None:
        pct = f" {100.0 * done / total:5.1f}%" if total else ""
        stream.write(f"\r  {done:,}{'/' + format(total, ',') if total else ''}{pct} {note}\x1b[K")
        stream.flush()

    return show


def _out_dir(args: argparse.Namespace, loaded: LoadedScenario) -> Path:
    if args.out is None:
        return default_out_dir(loaded)
    return Path(args.out) / loaded.header.name if len(args.files) > 1 else Path(args.out)


def _join_options(args: argparse.Namespace) -> JoinOptions | None:
    """``--join`` and its options, validated; ``ValueError`` naming the bad option."""
    secret_given = args.secret_file is not None or args.secret_env is not None
    if not args.join:
        if secret_given or args.listen is not None:
            raise ValueError("--secret-file, --secret-env and --listen belong to --join")
        return None
    if args.nodes is not None:
        raise ValueError("--join drives a cluster started by hand and --nodes starts one: "
                         "give one of them")
    if not secret_given:
        raise ValueError("--join needs the cluster secret: --secret-file FILE or "
                         "--secret-env VAR")
    listen = args.listen or "127.0.0.1:0"
    try:
        split_address(listen)
    except ValueError as exc:
        raise ValueError(f"--listen: {exc}") from None
    return JoinOptions(read_secret(args), listen)


def _with_clock(args: argparse.Namespace, loaded: LoadedScenario) -> LoadedScenario:
    """``loaded`` on the clock of ``--clock`` (real by default with ``--join``, whose node
    processes keep the real clock)."""
    clock = args.clock or ("real" if args.join else None)
    if clock is None or clock == loaded.header.clock:
        return loaded
    return msgspec.structs.replace(
        loaded, header=msgspec.structs.replace(loaded.header, clock=clock))


def _cmd_run(args: argparse.Namespace) -> int:
    try:
        args.join_options = _join_options(args)
    except ValueError as exc:
        return _error(str(exc))
    scenarios = _load_all(args.files)
    if scenarios is None:
        return EXIT_BAD_INPUT
    scenarios = [_with_clock(args, loaded) for loaded in scenarios]
    if len(scenarios) > 1 and args.store and "{out}" not in args.store \
            and args.store != "memory://":
        return _error(f"--store {args.store}: several scenarios cannot share one store; "
                      "put {out} in the URL (each scenario's output directory)")
    names = [s.header.name for s in scenarios]
    if args.out is not None and len(set(names)) < len(names):
        return _error("several files name the same scenario; their outputs would collide")
    code = EXIT_OK
    for loaded in scenarios:
        code = max(code, _run_one(args, loaded))
        if code == EXIT_INTERRUPTED:
            break
    return code


def _run_one(args: argparse.Namespace, loaded: LoadedScenario) -> int:
    out_dir = _out_dir(args, loaded)
    store = (args.store or loaded.header.store).replace("{out}", str(out_dir))
    if args.fresh:
        try:
            removed = clear_run(out_dir, store)
        except ScenarioError as exc:
            return _error(f"{loaded.path}: --fresh: {exc}")
        print(f"shardline: --fresh: deleted {', '.join(removed) or 'nothing (none existed)'}",
              file=sys.stderr)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        log_stream = (out_dir / "events.jsonl").open("a", encoding="utf-8")
    except OSError as exc:
        return _error(f"--out {out_dir}: cannot create output directory: {exc}")
    interactive = not args.json and sys.stderr.isatty()
    with log_stream:
        configure_logging(json=True, level=args.log_level, stream=log_stream)
        progress = _progress_printer(sys.stderr) if interactive else None
        try:
            report = run_scenario(loaded, seed=args.seed, store=store, out=out_dir,
                                  progress=progress, nodes=args.nodes,
                                  join=args.join_options)
        except (ScenarioError, StoreError) as exc:
            if interactive:
                sys.stderr.write("\r\x1b[K")
            text = str(exc)  # a field's error names the file already
            return _error(text if text.startswith(f"{loaded.path}: ") else
                          f"{loaded.path}: {text}")
        except KeyboardInterrupt:
            if interactive:
                sys.stderr.write("\r\x1b[K")
            print(f"shardline: interrupted; {store} keeps what was committed: run the same "
                  "command again to resume it (or add --fresh to start over)", file=sys.stderr)
            return EXIT_INTERRUPTED
        if interactive:
            sys.stderr.write("\r\x1b[K")
    if args.json:
        sys.stdout.write(report.to_json().decode() + "\n")
    else:
        print_report(report)
    return EXIT_OK if report.passed else EXIT_INVARIANT


def _cmd_list(args: argparse.Namespace) -> int:
    print("systems (entry-point group shardline.systems):")
    for system in system_catalog():
        print(f"  [{system.section}]  {system.source}  {system.summary}")
    folder = shipped_dir("scenarios")
    if folder is None:
        print("scenarios: no scenarios/ directory here or beside the installed package")
        return EXIT_OK
    print(f"scenarios ({folder}):")
    for row in shipped_scenarios(folder):
        print(f"  {row.file}  [{row.section}]  {row.summary}")
    return EXIT_OK


def _cmd_bench(args: argparse.Namespace) -> int:
    folder = shipped_dir("benchmarks")
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
    try:
        loop_choice()
    except ValueError as exc:
        return _error(str(exc))
    try:
        return handler(args)
    except KeyboardInterrupt:  # Ctrl-C outside a run (loading, listing, serving set-up)
        print("shardline: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
