"""Property: under any fault schedule, nothing is lost, nothing is delivered twice, order holds.

Hypothesis draws the layout (partitions, workers, batch size, records), the
seed, the store and a schedule of 1-4 faults of every kind at random times
and rates; each example is a simulated run checked by the stream's own
invariants *and* by reading the destination directory directly. The
examples are derandomized so the suite is deterministic.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.stream_helpers import (
    assert_all_held,
    assert_each_once,
    quiet_logs,
    read_dir_sink,
    run_doc,
    scenario_doc,
    source_items,
)


@pytest.fixture(autouse=True)
def _quiet() -> None:
    quiet_logs()


def _ms(low: int, high: int) -> st.SearchStrategy[str]:
    return st.integers(low, high).map(lambda n: f"{n}ms")


_ACTORS = st.sampled_from(["stream.worker-*", "stream.partition-*", "stream.producer",
                           "stream.coordinator", "stream.*"])
_STORE_OPS = st.sampled_from(["store.*", "store.write", "store.read", "store.get",
                              "store.acquire", "store.leases"])

# Crash intervals stay above the supervisor's largest restart backoff (0.1 s):
# an actor crashed faster than it can restart never runs at all, which tests
# the fault plan, not the stream.
FAULTS: st.SearchStrategy[dict[str, Any]] = st.one_of(
    st.fixed_dictionaries({"kind": st.just("crash"), "target": _ACTORS,
                           "every": _ms(150, 900)}),
    st.fixed_dictionaries({"kind": st.just("pause"), "target": st.just("stream.worker-*"),
                           "at": _ms(0, 1500), "duration": _ms(100, 4000)}),
    st.fixed_dictionaries({"kind": st.just("store_error"), "target": _STORE_OPS,
                           "probability": st.floats(0.002, 0.05)}),
    st.fixed_dictionaries({"kind": st.just("destination_error"), "target": st.just("*"),
                           "probability": st.floats(0.02, 0.6)}),
    st.fixed_dictionaries({"kind": st.just("lease_expiry"), "target": st.just("*"),
                           "every": _ms(100, 1000)}),
    st.fixed_dictionaries({"kind": st.sampled_from(["drop", "duplicate"]), "target": _ACTORS,
                           "probability": st.floats(0.005, 0.1)}),
    st.fixed_dictionaries({"kind": st.just("delay"), "target": _ACTORS,
                           "probability": st.floats(0.005, 0.1), "delay": _ms(10, 800)}),
)


@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(
    faults=st.lists(FAULTS, min_size=1, max_size=4),
    seed=st.integers(0, 10_000),
    store=st.sampled_from(["memory", "sqlite"]),
    partitions=st.integers(1, 6),
    workers=st.integers(1, 4),
    batch_size=st.sampled_from([1, 3, 17, 50, 200]),
    records=st.integers(0, 900),
    keys=st.integers(1, 60),
    lease_ttl=st.sampled_from(["500ms", "1s", "2s"]),
)
def test_no_fault_schedule_loses_duplicates_or_reorders(
    faults: list[dict[str, Any]], seed: int, store: str, partitions: int, workers: int,
    batch_size: int, records: int, keys: int, lease_ttl: str,
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        url = "memory://" if store == "memory" else f"sqlite:///{tmp}/state.db"
        source = {"records": records, "keys": keys, "payload_bytes": 16}
        doc = scenario_doc(url, faults=faults, seed=seed, partitions=partitions,
                           workers=workers, batch_size=batch_size, lease_ttl=lease_ttl,
                           batch_cost="2ms", source=source, timeout="900s")
        report = run_doc(doc, out)
        assert_all_held(report)
        assert report.metrics["records_committed"] == records
        assert_each_once(read_dir_sink(out / "sink"),
                         source_items(records, keys, 16, seed))
