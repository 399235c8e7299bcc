"""Several ``shardline serve`` processes as one service: the cost of forwarding, and a move.

    .venv/bin/python benchmarks/log_forwarding.py --quick       # ~20 s
    .venv/bin/python benchmarks/log_forwarding.py --store postgresql://app@db:5432/bench

Two ``shardline serve`` processes join one cluster on one PostgreSQL store
(a throwaway server on loopback with fsync on, ``tests/_postgres.py``, unless
``--store`` names one; each run uses a fresh schema). One log, ``bench``, is
owned by one of them (its ``LogServerEntity`` lease says which). One client
in this process (httpx, one connection per process) then makes, for
``--rounds`` rounds alternating **via the owner** (the baseline: no hop)
and **via the other** (every request forwarded over the cluster and
answered back), ``--requests`` sequential triples: append one record, read
one record from a session, acknowledge it. Each request's round trip is a
sample; the table gives p50 and p99 per kind and route, every round's
triples/s, and the forwarded/owner ratio of the medians.

Then the owner is SIGKILLed and the client appends through the survivor
until it answers 201: **move** is the time from the kill to that answer
(the log's lease expires, the survivor recovers the log from the store;
expected about one to two ``--lease-ttl``). Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from _quantiles import WARM_UP, p50_p99  # noqa: E402
from _stores import fresh_store  # noqa: E402

SHARDLINE = str(Path(sys.executable).parent / "shardline")
KINDS = ("append", "read", "ack")
RECORD = [{"key": "k", "payload_b64": "aGVsbG8="}]


def start_serve(store: str, secret: Path, name: str, lease_ttl: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [SHARDLINE, "serve", "--store", store, "--port", "0", "--cluster-listen",
         "127.0.0.1:0", "--secret-file", str(secret), "--node-name", name,
         "--lease-ttl", lease_ttl], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True)


def address(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    found = re.search(r"listening on (http://\S+)", line)
    if found is None:
        raise SystemExit(f"serve did not start: {line!r}")
    return found.group(1)


def owner_of(store: str, log: str) -> str:
    from runtime.cluster._membership import owner_node
    from runtime.store import open_store

    async def ask() -> str:
        s = await open_store(store, clock=time.time)
        try:
            lease = await s.lease(f"entity/LogServerEntity/{log}")
        finally:
            await s.close()
        assert lease is not None
        return owner_node(lease.owner)

    return asyncio.run(ask())


def triples(http: httpx.Client, session: str, count: int,
            samples: dict[str, list[float]] | None) -> float:
    """``count`` append/read/ack triples; their rate (per second)."""
    path = f"/logs/bench/sessions/{session}"
    started = time.perf_counter()
    for _ in range(count):
        t0 = time.perf_counter()
        http.post("/logs/bench/records", json=RECORD).raise_for_status()
        t1 = time.perf_counter()
        got = http.get(f"{path}/records?max=1")
        got.raise_for_status()
        t2 = time.perf_counter()
        receipts = [[r["seq"], r["delivery"]] for r in got.json()["records"]]
        http.post(f"{path}/ack", json={"receipts": receipts}).raise_for_status()
        t3 = time.perf_counter()
        if samples is not None:
            for kind, seconds in zip(KINDS, (t1 - t0, t2 - t1, t3 - t2), strict=True):
                samples[kind].append(seconds)
    return count / (time.perf_counter() - started)


def move(http: httpx.Client, owner: subprocess.Popen[str], limit: float) -> float:
    """SIGKILL the owner; seconds until an append through ``http`` is answered 201."""
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    killed = time.perf_counter()
    while time.perf_counter() - killed < limit:
        try:
            if http.post("/logs/bench/records", json=RECORD).status_code == 201:
                return time.perf_counter() - killed
        except httpx.HTTPError:
            pass
        time.sleep(0.01)
    raise SystemExit(f"the log did not move within {limit} s")


@contextmanager
def postgres(store: str | None) -> Iterator[str]:
    if store is not None:
        yield store
        return
    from tests._postgres import ThrowawayPostgres

    with ThrowawayPostgres(durable=True) as server:
        yield server.url("bench")


def measure(args: argparse.Namespace, store: str) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="shardline-bench-") as tmp:
        secret = Path(tmp) / "secret"
        secret.write_text("bench-secret\n")
        procs = {name: start_serve(store, secret, name, args.lease_ttl)
                 for name in ("serve-1", "serve-2")}
        try:
            clients = {name: httpx.Client(base_url=address(p), timeout=60.0)
                       for name, p in procs.items()}
            time.sleep(1.0)  # each in the other's view of the membership
            clients["serve-1"].post("/logs/bench/records", json=RECORD).raise_for_status()
            owner = owner_of(store, "bench")
            other = next(n for n in procs if n != owner)
            session = clients[owner].post("/logs/bench/sessions", json={"start": "latest"}
                                          ).json()["session"]
            routes = {"owner": clients[owner], "forwarded": clients[other]}
            samples = {route: {k: [] for k in KINDS} for route in routes}
            rates: dict[str, list[float]] = {route: [] for route in routes}
            for http in routes.values():  # warm both connections and paths
                triples(http, session, WARM_UP // 3, None)
            for _ in range(args.rounds):
                for route, http in routes.items():
                    rates[route].append(triples(http, session, args.requests,
                                                samples[route]))
            moved = move(clients[other], procs[owner], 10 * float(args.lease_ttl[:-1]))
        finally:
            for p in procs.values():
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            for p in procs.values():
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
    quantiles = {route: {k: p50_p99(v) for k, v in kinds.items()}
                 for route, kinds in samples.items()}
    return {"rates": rates, "quantiles": quantiles, "move_s": moved}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", help="postgresql://... (default: a throwaway server)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=300, help="triples per round")
    parser.add_argument("--lease-ttl", default="3s", help="serve --lease-ttl, in seconds (3s)")
    parser.add_argument("--quick", action="store_true", help="3 rounds of 100 triples")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.requests = 3, 100
    if not re.fullmatch(r"\d+(\.\d+)?s", args.lease_ttl):
        parser.error("--lease-ttl: expected seconds such as 3s")
    with postgres(args.store) as base, fresh_store("postgresql", base) as store:
        found = measure(args, store)
    rates: dict[str, list[float]] = found["rates"]  # type: ignore[assignment]
    quantiles: dict[str, dict[str, tuple[float, float]]] = found["quantiles"]  # type: ignore[assignment]
    table = Table(title=f"log requests via the owner vs forwarded ({args.rounds} rounds x "
                        f"{args.requests} append/read/ack triples, PostgreSQL)")
    for column in ("measure", "via owner", "forwarded", "forwarded/owner"):
        table.add_column(column, justify="right" if column != "measure" else "left")
    for kind in KINDS:
        for index, name in enumerate(("p50", "p99")):
            a, b = quantiles["owner"][kind][index], quantiles["forwarded"][kind][index]
            table.add_row(f"{kind} {name} (ms)", f"{a * 1e3:.2f}", f"{b * 1e3:.2f}",
                          f"{b / a:.2f}")
    a, b = statistics.median(rates["owner"]), statistics.median(rates["forwarded"])
    table.add_row("triples/s (median)", f"{a:,.0f}", f"{b:,.0f}", f"{b / a:.2f}")
    table.add_row("triples/s (every round)", " ".join(f"{r:,.0f}" for r in rates["owner"]),
                  " ".join(f"{r:,.0f}" for r in rates["forwarded"]), "")
    table.add_row(f"move after SIGKILL (s, lease {args.lease_ttl})", "",
                  f"{found['move_s']:.2f}", "")
    Console().print(table)
    print(json.dumps({"benchmark": "log_forwarding", "rounds": args.rounds,
                      "requests": args.requests, "lease_ttl": args.lease_ttl,
                      "triples_per_s": rates, "move_s": round(float(found["move_s"]), 3),  # type: ignore[arg-type]
                      "p50_p99_ms": {route: {k: [round(v * 1e3, 3) for v in q]
                                             for k, q in kinds.items()}
                                     for route, kinds in quantiles.items()}}))


if __name__ == "__main__":
    main()
