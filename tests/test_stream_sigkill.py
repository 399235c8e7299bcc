"""``shardline run`` killed with SIGKILL at random moments resumes and ends exactly once.

A real-clock scenario on an SQLite store writes to a ``dir://`` sink (one
file per batch) or an ``append://`` sink (one file per partition). The
test kills the process 2-3 times at seeded random moments, reruns the same
command against the same ``--out`` until a run exits 0, then reads the sink
files itself: every source record must be there exactly once.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from actors.stream import AppendDestination, Batch
from tests.scenario_helpers import rerun_to_completion, shardline_command
from tests.stream_helpers import assert_each_once, read_dir_sink, source_items

pytestmark = pytest.mark.real_processes

RECORDS, KEYS, PAYLOAD, SEED = 10000, 200, 32, 5

SCENARIO = f"""
[scenario]
name = "stream-sigkill"
seed = {SEED}
clock = "real"
store = "sqlite:///{{out}}/state.db"
timeout = "60s"

[stream]
partitions = 4
workers = 2
batch_size = 100
lease_ttl = "1s"
rate = 2000.0
produce_chunk = 100
source = {{ records = {RECORDS}, keys = {KEYS}, payload_bytes = {PAYLOAD} }}
destination = "SINK://{{out}}/sink"
"""


def _command(scenario: Path, out: Path) -> list[str]:
    return [*shardline_command(), "run", str(scenario), "--out", str(out), "--json"]


def _read_append_sink(path: Path) -> list[Batch]:
    return list(AppendDestination(path, threaded=False).batches())


READERS: dict[str, Callable[[Path], list[Batch]]] = {
    "dir": read_dir_sink, "append": _read_append_sink}


@pytest.mark.parametrize("sink", sorted(READERS))
def test_sigkill_at_random_moments_then_rerun_delivers_each_record_once(
        tmp_path: Path, sink: str) -> None:
    read_sink = READERS[sink]

    def records_in(path: Path) -> int:
        return sum(len(b.seqs) for b in read_sink(path)) if path.exists() else 0

    scenario = tmp_path / "sigkill.toml"
    scenario.write_text(SCENARIO.replace("SINK://", f"{sink}://"))
    out = tmp_path / "out"
    command = _command(scenario, out)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    rng = random.Random(20261123)
    killed_midway = 0
    for _ in range(rng.choice([2, 3])):
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                env=env, cwd=tmp_path)
        time.sleep(rng.uniform(0.8, 2.2))
        if proc.poll() is not None:  # finished before the kill: nothing left to interrupt
            _, err = proc.communicate()
            assert proc.returncode == 0, err.decode()
            break
        os.kill(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        if proc.returncode == 0:  # it finished between the poll and the kill
            break
        assert proc.returncode == -signal.SIGKILL, err.decode()
        done = records_in(out / "sink")
        killed_midway += done < RECORDS
    assert killed_midway >= 1, "no kill landed before the work was done; the test proved nothing"

    report = rerun_to_completion(command, env, tmp_path)
    held = {i["name"]: i["held"] for i in report["invariants"]}
    assert held["exactly_once"] and held["order"] and held["no_stale_commit"]
    assert held.get("resumed") is True  # the last run picked up the killed runs' work

    batches = read_sink(out / "sink")
    assert_each_once(batches, source_items(RECORDS, KEYS, PAYLOAD, SEED))
