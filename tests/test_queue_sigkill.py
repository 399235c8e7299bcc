"""``shardline run`` of a queue pipeline killed with SIGKILL at random moments resumes exactly.

A real-clock scenario on an SQLite store is killed 2-3 times at seeded
random moments; between kills the test opens the store itself to see how
far the pipeline got (so at least one kill provably landed mid-work). Then
it reruns the same command against the same ``--out`` until a run exits 0:
the final result must equal sums computed here over the originals, and the
ledger must count every original exactly once.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from actors.queue import GeneratedSource, QueueConfig, QueuePipeline
from actors.queue._source import generated_items
from runtime import Runtime
from runtime.scenario import load_scenario
from tests.queue_helpers import direct_sums, sim
from tests.scenario_helpers import rerun_to_completion, shardline_command

pytestmark = pytest.mark.real_processes

RECORDS, KEYS, SEED = 12_000, 400, 5

SCENARIO = f"""
[scenario]
name = "queue-sigkill"
seed = {SEED}
clock = "real"
store = "sqlite:///{{out}}/state.db"
timeout = "60s"

[queue]
servers = 3
visibility_timeout = "1s"
source = {{ records = {RECORDS}, keys = {KEYS} }}
rate = 10000.0
produce_chunk = 500

[[queue.tiers]]
name = "transform"
kind = "map"
clients = 2
out_keys = 50

[[queue.tiers]]
name = "summarize"
kind = "reduce"
clients = 2
window = 20
out_keys = 5

[[queue.tiers]]
name = "aggregate"
kind = "reduce"
window = 10
"""


def _command(scenario: Path, out: Path) -> list[str]:
    return [*shardline_command(), "run", str(scenario), "--out", str(out), "--json"]


def _events_size(out: Path) -> int:
    events = out / "events.jsonl"
    return events.stat().st_size if events.exists() else 0


def _wait_until_started(out: Path, proc: subprocess.Popen[bytes], before: int) -> None:
    """Wait until this run has logged its first events (imports done, runtime started),
    so the kill lands in the run whatever the machine's load."""
    deadline = time.monotonic() + 30.0
    while proc.poll() is None and time.monotonic() < deadline:
        if _events_size(out) > before:
            return
        time.sleep(0.02)


def _progress(scenario: Path, out: Path) -> tuple[int, bool]:
    """(originals durably enqueued, result folded) as the store holds them now."""
    config = load_scenario(scenario).config
    assert isinstance(config, QueueConfig)

    async def main() -> tuple[int, bool]:
        async with Runtime(store=f"sqlite:///{out}/state.db") as rt:
            pipeline = QueuePipeline(rt, config, seed=SEED)
            return (await pipeline.cursor()).position, await pipeline.done()

    return sim(main)


def test_sigkill_at_random_moments_then_rerun_counts_every_original_once(
    tmp_path: Path,
) -> None:
    scenario = tmp_path / "sigkill.toml"
    scenario.write_text(SCENARIO)
    out = tmp_path / "out"
    command = _command(scenario, out)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    rng = random.Random(20261124)
    killed_midway = 0
    for _ in range(rng.choice([2, 3])):
        before = _events_size(out)
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                env=env, cwd=tmp_path)
        _wait_until_started(out, proc, before)
        time.sleep(rng.uniform(0.3, 0.9))
        if proc.poll() is not None:  # finished before the kill: nothing left to interrupt
            _, err = proc.communicate()
            assert proc.returncode == 0, err.decode()
            break
        os.kill(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        if proc.returncode == 0:  # it finished between the poll and the kill
            break
        assert proc.returncode == -signal.SIGKILL, err.decode()
        if (out / "state.db").exists():
            produced, done = _progress(scenario, out)
            killed_midway += produced > 0 and not done
    assert killed_midway >= 1, "no kill landed mid-work; the test proved nothing"

    report = rerun_to_completion(command, env, tmp_path)
    held = {i["name"]: i["held"] for i in report["invariants"]}
    assert held["strict_order"] and held["exactly_once_contribution"]
    assert held["result_matches_oracle"] and held["dead_letters"]
    assert held.get("resumed") is True  # the last run picked up the killed runs' work

    items = list(generated_items(GeneratedSource(records=RECORDS, keys=KEYS), SEED))
    assert report["result"] == direct_sums(items)
    assert report["ledger"]["final"]["count"] == RECORDS
    assert report["ledger"]["dead_letters_counted_out"]["count"] == 0
