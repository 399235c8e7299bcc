"""Batches as the user configured them: longer than the lease, and capped in size.

- A batch that takes longer than ``lease_ttl`` still commits: the worker
  renews its leases while the batch runs (delivery runs beside the message
  handler), and checks the lease before committing.
- ``batch_size`` is a cap on the records of a batch, whatever size the
  producer's chunks are (a chunk is split across batches); with
  ``max_batch_bytes`` a backlogged partition cuts larger batches.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.stream_helpers import (
    BASE_STREAM,
    assert_all_held,
    assert_each_once,
    numbers,
    quiet_logs,
    read_dir_sink,
    run_doc,
    scenario_doc,
    source_items,
)


@pytest.fixture(autouse=True)
def _quiet() -> None:
    quiet_logs()


def test_a_batch_longer_than_the_lease_commits(tmp_path: Path) -> None:
    """1.2 s batches under a 1 s lease: every batch commits under the lease it started
    with (before, renewal waited for the batch, so every commit came too late and the
    partitions moved from worker to worker without progress)."""
    source = {"records": 400, "keys": 20, "payload_bytes": 16}
    doc = scenario_doc("memory://", timeout="120s", batch_cost="1200ms", lease_ttl="1s",
                       batch_size=50, rate=0.0, source=source)
    report = run_doc(doc, tmp_path / "out")
    assert_all_held(report)
    metrics = numbers(report)
    assert metrics["records_committed"] == 400
    assert metrics["late_commits_refused"] == 0
    assert metrics["lease_moves"] == 0
    assert_each_once(read_dir_sink(tmp_path / "out" / "sink"),
                     source_items(400, 20, 16, seed=1))


@pytest.mark.parametrize("batch_size", [7, 50])
def test_batch_size_caps_every_batch(tmp_path: Path, batch_size: int) -> None:
    """Produce chunks of 500 items (~125 per partition) with batch_size 7 or 50: no
    batch holds more than batch_size records, and batches cut chunks into pieces."""
    doc = scenario_doc("memory://", batch_size=batch_size, produce_chunk=500, rate=0.0)
    report = run_doc(doc, tmp_path / "out")
    assert_all_held(report)
    batches = read_dir_sink(tmp_path / "out" / "sink")
    sizes = [len(batch.records) for batch in batches]
    assert max(sizes) == batch_size
    assert numbers(report)["records_committed"] == BASE_STREAM["source"]["records"]
    src = BASE_STREAM["source"]
    assert_each_once(batches, source_items(src["records"], src["keys"], src["payload_bytes"],
                                           seed=1))


def test_a_backlogged_partition_cuts_larger_batches_up_to_max_batch_bytes(
        tmp_path: Path) -> None:
    """With the whole source appended at once (a backlog) and ``max_batch_bytes`` 2,000,
    batches grow past ``batch_size`` 10 (each at most 2,000 bytes of 16-byte payloads
    and their keys); every record still reaches the sink once."""
    doc = scenario_doc("memory://", batch_size=10, produce_chunk=2000, rate=0.0,
                       max_batch_bytes=2000)
    report = run_doc(doc, tmp_path / "out")
    assert_all_held(report)
    sizes = [len(batch.records) for batch in read_dir_sink(tmp_path / "out" / "sink")]
    assert 10 < max(sizes) <= 2000 // 16
    src = BASE_STREAM["source"]
    assert_each_once(read_dir_sink(tmp_path / "out" / "sink"),
                     source_items(src["records"], src["keys"], src["payload_bytes"], seed=1))



def test_a_backlogged_partition_reads_ahead_to_fill_max_batch_bytes(tmp_path: Path) -> None:
    """Small producer chunks (about 10 records per partition) and 2 batches of 10 in
    flight: a backlogged partition reads ahead until each batch can reach
    ``max_batch_bytes`` 3,000 (about 100 records of 16-byte payloads and their keys).
    Before, it read ahead only ``batch_size`` x ``batches_in_flight`` records, so no
    batch grew past about 30 records whatever the budget."""
    doc = scenario_doc("memory://", batch_size=10, batches_in_flight=2, produce_chunk=40,
                       rate=0.0, max_batch_bytes=3000)
    report = run_doc(doc, tmp_path / "out")
    assert_all_held(report)
    batches = read_dir_sink(tmp_path / "out" / "sink")
    sizes = [len(batch.records) for batch in batches]
    assert 60 < max(sizes) <= 3000 // 16
    src = BASE_STREAM["source"]
    assert_each_once(batches, source_items(src["records"], src["keys"], src["payload_bytes"],
                                           seed=1))
