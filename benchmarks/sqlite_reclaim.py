"""How a sqlite store gets back the space of truncated entries: freelist reuse or
incremental auto-vacuum.

Both arms run the same steady load through ``SqliteStore``: append a batch
of entries to a few logs, then truncate each log behind its newest
``--keep`` entries. ``freelist`` is the store as shipped (``auto_vacuum =
NONE``: deleted pages go on the freelist and the next inserts reuse them);
``incremental`` creates the file with ``auto_vacuum = INCREMENTAL`` and runs
``PRAGMA incremental_vacuum`` after every truncation (pages go back to the
file system). Reported per arm: file + WAL bytes and the file alone after 1x and 4x the
rounds, and milliseconds per round. Arms alternate; every repeat is printed.

    python benchmarks/sqlite_reclaim.py --rounds 400 --repeats 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from runtime.store import Append, Truncate, open_store
from runtime.store._sqlite import SqliteStore

LOGS = 4


def store_bytes(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


async def run_arm(arm: str, rounds: int, batch: int, keep: int, payload: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="shardline-reclaim-") as tmp:
        path = Path(tmp) / "s.db"
        if arm == "incremental":
            conn = sqlite3.connect(path)
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            conn.execute("VACUUM")
            conn.close()
        store = await open_store(f"sqlite:///{path}", clock=time.monotonic)
        assert isinstance(store, SqliteStore)
        sizes: dict[int, int] = {}
        files: dict[int, int] = {}
        started = time.perf_counter()
        body = b"x" * payload
        for n in range(1, 4 * rounds + 1):
            ops = [Append(f"log/{i}", [(f"k{n}", body)] * batch) for i in range(LOGS)]
            await store.write(ops)
            await store.write([Truncate(f"log/{i}", max(0, n * batch - keep))
                               for i in range(LOGS)])
            if arm == "incremental":
                store._conn.execute("PRAGMA incremental_vacuum").fetchall()
            if n in (rounds, 4 * rounds):
                sizes[n] = store_bytes(path)
                files[n] = path.stat().st_size
        elapsed = time.perf_counter() - started
        await store.close()
    return {"bytes_1x": sizes[rounds], "bytes_4x": sizes[4 * rounds],
            "db_1x": files[rounds], "db_4x": files[4 * rounds],
            "ms_per_round": 1000 * elapsed / (4 * rounds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--keep", type=int, default=500)
    parser.add_argument("--payload", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    runs: dict[str, list[dict[str, float]]] = {"freelist": [], "incremental": []}
    print(f"{'arm':<12} {'repeat':>6} {'bytes@1x':>10} {'bytes@4x':>10} {'ratio':>6} {'db@1x':>8} {'db@4x':>8} {'ms/round':>9}")
    for repeat in range(args.repeats):
        for arm in runs:
            r = asyncio.run(run_arm(arm, args.rounds, args.batch, args.keep, args.payload))
            runs[arm].append(r)
            print(f"{arm:<12} {repeat:>6} {r['bytes_1x']:>10.0f} {r['bytes_4x']:>10.0f} "
                  f"{r['bytes_4x'] / r['bytes_1x']:>6.2f} {r['db_1x']:>8.0f} {r['db_4x']:>8.0f} "
                  f"{r['ms_per_round']:>9.3f}")
    summary = {arm: {"median_ms_per_round": statistics.median(r["ms_per_round"] for r in rs),
                     "max_bytes_4x": max(r["bytes_4x"] for r in rs),
                     "runs": rs} for arm, rs in runs.items()}
    print(json.dumps({"benchmark": "sqlite_reclaim", "baseline": "freelist", **summary}))


if __name__ == "__main__":
    main()
