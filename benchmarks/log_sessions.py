"""Log delivery through receiver sessions: throughput and append-to-delivery latency.

    .venv/bin/python benchmarks/log_sessions.py            # 1,000,000 records (minutes)
    .venv/bin/python benchmarks/log_sessions.py --quick    # 50,000 records (< 30 s)

Workload (issue 5): a log of N records (SQLite store in a temp dir), read by
10 sessions from the start, 2 readers per session, read batch 500; each
reader acknowledges what it read (by receipt: seq and delivery). Measured twice in one run:

- **in process**: readers call ``LogClient.read``/``ack`` on the same event
  loop as the ``LogServer`` actor (the baseline);
- **over HTTP**: ``shardline serve`` in a subprocess on loopback, readers
  are httpx clients in this process.

"delivered/s" counts record deliveries to sessions (10 sessions x N records
= 10 N deliveries), each durably recorded in its session before the read
returns and acknowledged by a later durable ack. Latency: one reader
long-polls a session at ``latest``; a record is appended, and the time from
the append call to the read returning it is one sample (appends are
serialised, so samples do not queue behind each other).

Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import msgspec
from rich.console import Console
from rich.table import Table

import runtime
from actors.logdelivery import LogClient, open_log
from runtime import Runtime
from runtime.scenario import percentile

ROOT = Path(__file__).resolve().parent.parent
SHARDLINE = str(Path(sys.executable).parent / "shardline")


def make_entries(start: int, count: int, payload_bytes: int) -> list[tuple[str, bytes]]:
    pad = b"x" * (payload_bytes - 8)
    return [(f"k{i % 1000}", i.to_bytes(8, "big") + pad) for i in range(start, start + count)]


# -- in process -------------------------------------------------------------------


async def inprocess(args: argparse.Namespace, store_url: str) -> dict[str, float]:
    async with Runtime(store=store_url, trace="lifecycle") as rt:
        log = await open_log(rt, "bench")
        t0 = time.perf_counter()
        for start in range(0, args.records, 5000):
            await log.append(make_entries(start, min(5000, args.records - start),
                                          args.payload_bytes))
        append_s = time.perf_counter() - t0
        sessions = [await log.create_session("earliest") for _ in range(args.sessions)]
        t0 = time.perf_counter()
        counts = await asyncio.gather(*(
            _reader(log, s, args) for s in sessions for _ in range(args.clients)))
        deliver_s = time.perf_counter() - t0
        latency = await _latency_inprocess(log, args.samples)
    total = sum(counts)
    return {"append_per_s": args.records / append_s, "delivered": total,
            "deliver_s": deliver_s, "delivered_per_s": total / deliver_s, **latency}


async def _reader(log: LogClient, session: str, args: argparse.Namespace) -> int:
    got = 0
    while True:
        result = await log.read(session, args.batch, wait=0.0)
        if not result.records:
            info = await log.describe(session)
            if info.floor >= info.high_water:
                return got
            await asyncio.sleep(0.001)
            continue
        got += len(result.records)
        await log.ack(session, result.records)


async def _latency_inprocess(log: LogClient, samples: int) -> dict[str, float]:
    session = await log.create_session("latest")
    waiting: asyncio.Queue[float] = asyncio.Queue()

    async def wait_one() -> None:
        result = await log.read(session, 10, wait=10.0)
        await waiting.put(time.perf_counter())
        await log.ack(session, result.records)

    found = []
    for i in range(samples):
        task = asyncio.get_running_loop().create_task(wait_one())
        await asyncio.sleep(0)  # let the reader park first
        await asyncio.sleep(0)
        sent = time.perf_counter()
        await log.append([("lat", i.to_bytes(8, "big"))])
        found.append(await waiting.get() - sent)
        await task
    return _latency_fields(found)


def _latency_fields(found: list[float]) -> dict[str, float]:
    return {"latency_p50_ms": percentile(found, 0.5) * 1e3,
            "latency_p99_ms": percentile(found, 0.99) * 1e3,
            "latency_p999_ms": percentile(found, 0.999) * 1e3,
            "latency_max_ms": max(found) * 1e3, "latency_samples": len(found)}


# -- over HTTP --------------------------------------------------------------------


class _Record(msgspec.Struct):
    seq: int
    delivery: int


class _Read(msgspec.Struct):
    records: list[_Record]


class _Info(msgspec.Struct):
    floor: int
    high_water: int


def start_server(store_url: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([SHARDLINE, "serve", "--store", store_url, "--port", "0"],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"http://\S+", line)
    if match is None:
        proc.kill()
        raise RuntimeError(f"shardline serve did not start: {line!r}")
    return proc, match.group(0)


async def over_http(args: argparse.Namespace, store_url: str) -> dict[str, float]:
    proc, url = start_server(store_url)
    try:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60.0) as http:
            t0 = time.perf_counter()
            for start in range(0, args.records, 5000):
                body = [{"key": k, "payload_b64": base64.b64encode(p).decode()}
                        for k, p in make_entries(start, min(5000, args.records - start),
                                                 args.payload_bytes)]
                (await http.post("/logs/bench/records", json=body)).raise_for_status()
            append_s = time.perf_counter() - t0
            sessions = []
            for _ in range(args.sessions):
                r = await http.post("/logs/bench/sessions", json={"start": "earliest"})
                sessions.append(r.json()["session"])
            t0 = time.perf_counter()
            counts = await asyncio.gather(*(
                _http_reader(http, s, args) for s in sessions for _ in range(args.clients)))
            deliver_s = time.perf_counter() - t0
            latency = await _latency_http(http, args.samples)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    total = sum(counts)
    return {"append_per_s": args.records / append_s, "delivered": total,
            "deliver_s": deliver_s, "delivered_per_s": total / deliver_s, **latency}


async def _http_reader(http: httpx.AsyncClient, session: str, args: argparse.Namespace) -> int:
    got = 0
    base = f"/logs/bench/sessions/{session}"
    while True:
        r = await http.get(f"{base}/records", params={"max": args.batch})
        r.raise_for_status()
        receipts = [(rec.seq, rec.delivery)
                    for rec in msgspec.json.decode(r.content, type=_Read).records]
        if not receipts:
            info = msgspec.json.decode((await http.get(base)).content, type=_Info)
            if info.floor >= info.high_water:
                return got
            await asyncio.sleep(0.001)
            continue
        got += len(receipts)
        (await http.post(f"{base}/ack", content=msgspec.json.encode({"receipts": receipts}))
         ).raise_for_status()


async def _latency_http(http: httpx.AsyncClient, samples: int) -> dict[str, float]:
    session = (await http.post("/logs/lat/sessions", json={"start": "latest"})).json()["session"]
    base = f"/logs/lat/sessions/{session}"
    found = []
    for i in range(samples):
        reader = asyncio.get_running_loop().create_task(
            http.get(f"{base}/records", params={"max": 10, "wait": 10}))
        await asyncio.sleep(0.002)  # the long poll reaches the server and parks
        sent = time.perf_counter()
        body = [{"key": "lat", "payload_b64": base64.b64encode(i.to_bytes(8, "big")).decode()}]
        appended = asyncio.get_running_loop().create_task(
            http.post("/logs/lat/records", json=body))
        r = await reader
        found.append(time.perf_counter() - sent)
        (await appended).raise_for_status()
        receipts = [[rec.seq, rec.delivery]
                    for rec in msgspec.json.decode(r.content, type=_Read).records]
        await http.post(f"{base}/ack", json={"receipts": receipts})
    return _latency_fields(found)


# -- report -----------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--clients", type=int, default=2, help="readers per session")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--payload-bytes", type=int, default=100)
    parser.add_argument("--samples", type=int, default=2000, help="latency samples")
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP run")
    parser.add_argument("--quick", action="store_true", help="50,000 records, 300 samples")
    args = parser.parse_args()
    if args.quick:
        args.records, args.samples = 50_000, 300
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="shardline-bench-") as tmp:
        results["in_process"] = runtime.run(inprocess, args, f"sqlite:///{tmp}/inproc.db")
        if not args.no_http:
            results["http"] = asyncio.run(over_http(args, f"sqlite:///{tmp}/http.db"))
    table = Table(title=f"log sessions: {args.records:,} records, {args.sessions} sessions x "
                        f"{args.clients} readers, batch {args.batch}, SQLite")
    for column in ("mode", "append rec/s", "delivered rec/s", "deliver s",
                   "p50 ms", "p99 ms", "p99.9 ms", "max ms"):
        table.add_column(column, justify="right" if column != "mode" else "left")
    for mode, r in results.items():
        table.add_row(mode, f"{r['append_per_s']:,.0f}", f"{r['delivered_per_s']:,.0f}",
                      f"{r['deliver_s']:.2f}", f"{r['latency_p50_ms']:.3f}",
                      f"{r['latency_p99_ms']:.3f}", f"{r['latency_p999_ms']:.3f}",
                      f"{r['latency_max_ms']:.3f}")
    Console(stderr=True, width=120).print(table)
    print(json.dumps({"benchmark": "log_sessions", "records": args.records,
                      "sessions": args.sessions, "clients_per_session": args.clients,
                      "batch": args.batch, "payload_bytes": args.payload_bytes,
                      "results": {m: {k: round(v, 4) for k, v in r.items()}
                                  for m, r in results.items()}}))


if __name__ == "__main__":
    main()
