"""Store backends side by side: SQLite (the embedded default) vs PostgreSQL, in one run.

Measured on each backend, alternating (sqlite, postgresql, sqlite, ...) for
``--repeat`` rounds so a burst of load on the shared machine hits both:

- fenced writes/s with 1 op per write: ``--writers`` tasks of one process
  each write ``Put`` under one lease's fencing token, back to back; group
  commit is what lets one process pass a commit's latency;
- the same with 100 ops per write (writes/s and ops/s);
- log appends in packed chunks: ``--appenders`` tasks append chunks of
  ``--chunk`` entries (64 bytes each) to logs of their own (records/s);
- the stream benchmark's job (``stream_exactly_once.shardline_job``: 8
  partitions, batches of 500, a fsynced ``dir://`` sink) on each store
  (records/s), unless ``--no-stream``.

PostgreSQL: ``--store postgresql://...`` names a server of one's own (every
run uses a fresh schema of it, dropped afterwards); without it the benchmark
starts a throwaway server on loopback with fsync on (``tests/_postgres.py``,
the helper the tests use). SQLite: a file in a temporary directory,
``synchronous=normal`` (its default). Prints a table of every run, then one
JSON line (last line of stdout) with all figures and the PostgreSQL/SQLite
ratios of the medians.

    .venv/bin/python benchmarks/store_backends.py --quick
    .venv/bin/python benchmarks/store_backends.py --store postgresql://app@db:5432/bench
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from _stores import fresh_store  # noqa: E402

import runtime  # noqa: E402
from runtime.store import Append, Fence, Put, Store, open_store  # noqa: E402
from runtime.store._url import shown_url  # noqa: E402

Measure = Callable[[Store, argparse.Namespace], Awaitable[tuple[int, float]]]


# -- measurements: each returns (units done, seconds) ------------------------------------


async def fenced_writes(store: Store, args: argparse.Namespace, ops: int) -> tuple[int, float]:
    lease = await store.acquire("bench/lease", "bench", 3600)
    assert lease is not None
    fence = Fence("bench/lease", lease.token)
    per_writer = max(1, args.writes // args.writers)

    async def writer(w: int) -> None:
        for i in range(per_writer):
            await store.write([Put(f"w{w}/k{j}", b"x" * 32) for j in range(ops)], fence=fence)
            del i

    started = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(args.writers)))
    return per_writer * args.writers, time.perf_counter() - started


async def fenced_single(store: Store, args: argparse.Namespace) -> tuple[int, float]:
    return await fenced_writes(store, args, 1)


async def fenced_hundred(store: Store, args: argparse.Namespace) -> tuple[int, float]:
    done, seconds = await fenced_writes(store, argparse.Namespace(
        writes=max(args.writers, args.writes // 20), writers=args.writers), 100)
    return done * 100, seconds


async def log_appends(store: Store, args: argparse.Namespace) -> tuple[int, float]:
    chunks = max(1, args.records // args.chunk // args.appenders)
    payload = b"p" * 64

    async def appender(a: int) -> None:
        for c in range(chunks):
            await store.write([Append(f"log/{a}", [(f"k{c}", payload)] * args.chunk)])

    started = time.perf_counter()
    await asyncio.gather(*(appender(a) for a in range(args.appenders)))
    return chunks * args.chunk * args.appenders, time.perf_counter() - started


async def on_store(url: str, measure: Measure, args: argparse.Namespace) -> tuple[int, float]:
    async with await open_store(url, clock=time.time) as store:
        return await measure(store, args)


def stream_rate(url: str, args: argparse.Namespace) -> tuple[int, float]:
    from stream_exactly_once import shardline_job

    from actors.stream import GeneratedSource, StreamConfig
    from actors.stream._source import generated_items

    spec = GeneratedSource(records=args.stream_records)
    items = list(generated_items(spec, 0))
    config = StreamConfig(source=spec, partitions=8, workers=4, batch_size=500,
                          destination="dir://unused")
    with tempfile.TemporaryDirectory(prefix="shardline-bench-") as tmp:
        run = runtime.run(shardline_job, items, config, Path(tmp), [], "stream", 600.0, "dir",
                          url)
    if not run.finished:
        raise SystemExit(f"stream job on {shown_url(url)} did not finish")
    return run.records, run.wall_s


MEASURES: dict[str, tuple[str, Measure | None]] = {
    "fenced_1op_writes_per_s": ("fenced writes/s, 1 op each", fenced_single),
    "fenced_100op_ops_per_s": ("fenced ops/s, 100 ops per write", fenced_hundred),
    "append_records_per_s": ("log append records/s, packed chunks", log_appends),
    "stream_records_per_s": ("stream job records/s", None),
}


def measure_once(name: str, kind: str, base: str, args: argparse.Namespace) -> float:
    with fresh_store(kind, base) as url:
        function = MEASURES[name][1]
        if function is None:
            done, seconds = stream_rate(url, args)
        else:
            done, seconds = asyncio.run(on_store(url, function, args))
    return done / seconds


def run_all(args: argparse.Namespace, postgres: str) -> dict[str, dict[str, list[float]]]:
    names = [n for n in MEASURES if not (args.no_stream and n.startswith("stream"))]
    rates: dict[str, dict[str, list[float]]] = {n: {"sqlite": [], "postgresql": []}
                                                for n in names}
    for _ in range(args.repeat):
        for name in names:
            for kind in ("sqlite", "postgresql"):
                rates[name][kind].append(measure_once(name, kind, postgres, args))
    return rates


def report(args: argparse.Namespace, rates: dict[str, dict[str, list[float]]],
           where: str) -> dict[str, object]:
    table = Table(title=f"store backends: sqlite vs postgresql ({where}); "
                        f"{args.writers} writers, {args.appenders} appenders x {args.chunk}")
    for column in ("measure", "sqlite (median)", "postgresql (median)", "pg/sqlite",
                   "sqlite runs", "postgresql runs"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    figures: dict[str, object] = {}
    for name, kinds in rates.items():
        lite, pg = statistics.median(kinds["sqlite"]), statistics.median(kinds["postgresql"])
        table.add_row(MEASURES[name][0], f"{lite:,.0f}", f"{pg:,.0f}", f"{pg / lite:.2f}",
                      " ".join(f"{r:,.0f}" for r in kinds["sqlite"]),
                      " ".join(f"{r:,.0f}" for r in kinds["postgresql"]))
        figures[name] = {"sqlite": [round(r, 1) for r in kinds["sqlite"]],
                         "postgresql": [round(r, 1) for r in kinds["postgresql"]],
                         "ratio_of_medians": round(pg / lite, 3)}
    Console(width=170).print(table)
    single = statistics.median(rates["fenced_1op_writes_per_s"]["postgresql"])
    goals: dict[str, bool | None] = {"pg_fenced_1op_ge_5000_per_s": single >= 5000}
    if "stream_records_per_s" in rates:
        stream = rates["stream_records_per_s"]
        goals["pg_stream_ge_half_of_sqlite"] = (
            statistics.median(stream["postgresql"]) >= 0.5 * statistics.median(stream["sqlite"]))
    print(f"goals: {goals}")
    return {"benchmark": "store_backends", "postgresql": where, "repeat": args.repeat,
            "writers": args.writers, "appenders": args.appenders, "chunk": args.chunk,
            "stream_records": None if args.no_stream else args.stream_records,
            **figures, "goals": goals}


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", default=None,
                        help="postgresql:// URL of one's own server (default: a throwaway one)")
    parser.add_argument("--writes", type=int, default=20_000, help="1-op fenced writes per run")
    parser.add_argument("--writers", type=int, default=256)
    parser.add_argument("--records", type=int, default=400_000, help="appended per run")
    parser.add_argument("--appenders", type=int, default=8)
    parser.add_argument("--chunk", type=int, default=500)
    parser.add_argument("--stream-records", type=int, default=200_000)
    parser.add_argument("--no-stream", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small runs, one round")
    args = parser.parse_args(argv)
    if args.quick:
        args.writes, args.records, args.stream_records, args.repeat = 4000, 100_000, 50_000, 1
    if args.store is not None and urlsplit(args.store).scheme not in ("postgresql", "postgres"):
        parser.error("--store takes a postgresql:// URL (sqlite is always measured)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    runtime.configure_logging(level="critical")
    if args.store is not None:
        rates = run_all(args, args.store)
        where = shown_url(args.store)
    else:
        from tests._postgres import ThrowawayPostgres

        with ThrowawayPostgres(durable=True) as server:
            rates = run_all(args, server.url())
            where = "throwaway server on loopback, fsync on"
    print(json.dumps(report(args, rates, where)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
