"""A queue run across nodes reports progress while it runs (``actors.queue._tail``).

The servers' counters stay on the nodes, so the driver replays their journals each
sample interval: the samples rise while the run does, dip when a node dies (its
servers wait for their leases to expire) and recover, and the per-tier latencies are
measured, not 0. Simulated nodes, seeded.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from actors.queue import QueueConfig
from actors.queue._history import read_history
from actors.queue._journal import BatchesAcked
from actors.queue._nodes import servers_audit
from actors.queue._recipe import NodeRecipe
from runtime.scenario import Sample, load_scenario, run_scenario
from runtime.store import open_store

SCENARIO = """[scenario]
name = "queue-node-samples"
nodes = 3
seed = 3
clock = "simulated"
store = "sqlite:///{out}/state.db"
timeout = "2m"
samples = "500ms"

[queue]
servers = 4
visibility_timeout = "2s"
ask_timeout = "5s"
source = { records = 3000, keys = 200 }
rate = 250.0
produce_chunk = 50
receive_batch = 25
checkpoint_every = CHECKPOINT_EVERY

[[queue.tiers]]
name = "transform"
clients = 2
kind = "map"
out_keys = 60
process_cost = "20ms"

[[queue.tiers]]
name = "summarize"
clients = 1
kind = "reduce"
window = 10
process_cost = "20ms"

[[faults]]
kind = "kill_node"
target = "node-1"
at = "5s"

[expect]
node_kills = 1
max_dead_letters = 0
"""


def _run(tmp_path: Path, checkpoint_every: int) -> tuple[dict[str, object], list[Sample],
                                                         dict[str, object]]:
    file = tmp_path / "samples.toml"
    file.write_text(SCENARIO.replace("CHECKPOINT_EVERY", str(checkpoint_every)))
    samples: list[Sample] = []
    report = run_scenario(load_scenario(file), out=tmp_path / "out",
                          on_sample=samples.append)
    failed = {i.name: i.detail for i in report.invariants if not i.held}
    assert report.passed and not failed, failed
    return dict(report.metrics), samples, dict(report.extra)


# 256: no compaction during the run; 3: the journals are compacted between polls, so
# the tail reads the entries it missed from the servers' audit files
@pytest.mark.parametrize("checkpoint_every", [256, 3])
def test_queue_node_samples_rise_dip_at_a_node_kill_and_recover(
        tmp_path: Path, checkpoint_every: int) -> None:
    metrics, samples, _extra = _run(tmp_path, checkpoint_every)
    completed = [s.completed for s in samples]
    assert completed == sorted(completed)
    assert completed[-1] == metrics["acked"]
    kill = next(i for i, s in enumerate(samples)
                if any(f.kind == "kill_node" for f in s.fault_events))
    before = [s.throughput for s in samples[:kill]]
    assert len(before) >= 6 and all(t > 0 for t in before[1:]), before
    steady = sum(before[1:]) / len(before[1:])
    after = [s.throughput for s in samples[kill + 1:-1]]
    assert min(after[:4]) < 0.2 * steady, after  # the killed node's servers wait
    dip = after.index(min(after[:4]))
    recovered = after[dip:]
    assert any(sum(recovered[i:i + 3]) / 3 >= 0.9 * steady
               for i in range(len(recovered) - 2)), (steady, recovered)


def test_queue_node_run_counts_every_ack_once_and_measures_tier_latencies(
        tmp_path: Path) -> None:
    metrics, samples, extra = _run(tmp_path, 256)
    for tier in ("transform", "summarize"):
        assert 0 < metrics[f"{tier}_latency_p50_s"] <= metrics[f"{tier}_latency_p99_s"]
    rows = extra["tiers"]
    assert isinstance(rows, list)
    assert all(row["latency_p50_s"] > 0 for row in rows)
    assert any(s.p50 is not None and s.p50 > 0 for s in samples)

    config = load_scenario(tmp_path / "samples.toml").config
    assert isinstance(config, QueueConfig)
    audit = servers_audit(NodeRecipe(config, 3, 1, audit_dir=str(tmp_path / "out" / "audit")))

    async def acked_in_journals() -> int:
        store = await open_store(f"sqlite:///{tmp_path / 'out' / 'state.db'}", clock=time.time)
        try:
            history = await read_history(store, config.name, config.servers, audit)
        finally:
            await store.close()
        assert not history.gaps
        return sum(sum(e.counts) for events in history.events for e in events
                   if isinstance(e, BatchesAcked))

    assert metrics["acked"] == asyncio.run(acked_in_journals())
