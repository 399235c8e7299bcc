"""Stream retention: committed, old records leave the store; the checks still see them all.

Runs are simulated scenarios through the public runner (``stream_helpers``),
on a sqlite store so the floors read afterwards are the durable ones.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from actors.stream import _keys as keys
from runtime.store import open_store
from tests.stream_helpers import (
    assert_all_held,
    assert_each_once,
    quiet_logs,
    read_dir_sink,
    run_doc,
    scenario_doc,
    source_items,
)

RECORDS, KEYS, PAYLOAD, SEED = 4000, 100, 16, 3
CRASHES = [{"kind": "crash", "target": "stream.worker-*", "every": "150ms"},
           {"kind": "store_error", "target": "store.*", "probability": 0.01}]


@pytest.fixture(autouse=True)
def _quiet() -> None:
    quiet_logs()


async def _floors(db: Path, partitions: int) -> list[tuple[int, int, int]]:
    """(record log floor, its high water, commit log floor) per partition."""
    async with await open_store(f"sqlite:///{db}", clock=time.monotonic) as store:
        found = []
        for p in range(partitions):
            log = keys.log_name("stream", p)
            found.append((await store.floor(log), await store.high_water(log),
                          await store.floor(keys.commits_log("stream", p))))
        return found


def test_records_older_than_retention_are_truncated_and_still_checked(tmp_path: Path) -> None:
    out = tmp_path / "out"
    doc = scenario_doc("sqlite:///{out}/state.db", faults=CRASHES, seed=SEED,
                       retention="300ms", rate=2000.0,
                       source={"records": RECORDS, "keys": KEYS, "payload_bytes": PAYLOAD})
    report = run_doc(doc, out)
    assert_all_held(report)
    floors = asyncio.run(_floors(out / "state.db", 4))
    assert all(log_floor > 0 and commits_floor > 0 for log_floor, _, commits_floor in floors)
    assert all(log_floor <= high for log_floor, high, _ in floors)
    assert (out / "audit" / "stream-stream.msgpack").stat().st_size > 0
    assert_each_once(read_dir_sink(out / "sink"), source_items(RECORDS, KEYS, PAYLOAD, SEED))


def test_with_the_default_retention_nothing_is_truncated(tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = run_doc(scenario_doc("sqlite:///{out}/state.db", seed=SEED), out)
    assert_all_held(report)
    assert all(f == (0, f[1], 0) for f in asyncio.run(_floors(out / "state.db", 4)))
    assert not (out / "audit").exists()


def test_a_truncated_log_without_its_audit_fails_the_check(tmp_path: Path) -> None:
    out = tmp_path / "out"
    doc = scenario_doc("sqlite:///{out}/state.db", seed=SEED, retention="300ms")
    assert_all_held(run_doc(doc, out))
    (out / "audit" / "stream-stream.msgpack").unlink()
    report = run_doc(doc, out)  # the rerun resumes, then checks from seq 0
    assert not report.passed
    failed = {i.name: i.detail for i in report.invariants if not i.held}
    assert set(failed) == {"exactly_once", "order", "no_stale_commit"}
    assert "stream/stream/p0" in failed["exactly_once"]
    assert "truncated below seq" in failed["exactly_once"]


def test_shardline_run_reports_the_store_size_at_the_end(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from runtime.cli import main as shardline

    path = tmp_path / "size.toml"
    path.write_text("""
[scenario]
name = "size"
store = "sqlite:///{out}/state.db"
[stream]
source = { records = 500 }
""")
    out = tmp_path / "out"
    assert shardline(["run", str(path), "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["store_bytes"] > 0 and report["store_size_basis"] == "sqlite database file + WAL"
    assert shardline(["run", str(path), "--out", str(tmp_path / "again")]) == 0
    assert "store size " in capsys.readouterr().out
