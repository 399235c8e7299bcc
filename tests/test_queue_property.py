"""Property: under any fault schedule, per-key order holds and every original counts once.

Hypothesis draws the layout (servers, clients per tier, windows, records,
keys, visibility timeout, lineage mode, store) and a schedule of 1-4 faults
(crashes, pauses, store errors) at random targets, times and rates; each
example is a small simulated run checked by the queue's own invariants and
by comparing the result with sums computed here. Examples are derandomized,
so the suite is deterministic.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.queue_helpers import (
    assert_all_held,
    direct_sums,
    generated,
    quiet_logs,
    run_doc,
    scenario_doc,
)


@pytest.fixture(autouse=True)
def _quiet() -> None:
    quiet_logs()


def _ms(low: int, high: int) -> st.SearchStrategy[str]:
    return st.integers(low, high).map(lambda n: f"{n}ms")


_ACTORS = st.sampled_from(["queue.transform-*", "queue.summarize-*", "queue.aggregate-*",
                           "queue.final", "queue.server-*", "queue.producer",
                           "queue.conductor", "queue.*"])
_CLIENTS = st.sampled_from(["queue.transform-*", "queue.summarize-*", "queue.aggregate-*",
                            "queue.final", "queue.*"])
_STORE_OPS = st.sampled_from(["store.*", "store.write", "store.read", "store.get",
                              "store.scan", "store.high_water"])

# Crash intervals stay above the supervisor's largest restart backoff (0.1 s), and a
# schedule holds at most one fault of a kind per target (see ``unique_by`` below): an
# actor crashed faster than it can restart never runs, which tests the fault plan.
FAULTS: st.SearchStrategy[dict[str, Any]] = st.one_of(
    st.fixed_dictionaries({"kind": st.just("crash"), "target": _ACTORS,
                           "every": _ms(150, 600)}),
    st.fixed_dictionaries({"kind": st.just("crash"), "target": _ACTORS, "at": _ms(0, 400)}),
    st.fixed_dictionaries({"kind": st.just("pause"), "target": _CLIENTS,
                           "at": _ms(0, 400), "duration": _ms(50, 2500)}),
    st.fixed_dictionaries({"kind": st.just("store_error"), "target": _STORE_OPS,
                           "probability": st.floats(0.002, 0.04)}),
    st.fixed_dictionaries({"kind": st.just("delay"), "target": st.just("queue.server-*"),
                           "probability": st.floats(0.05, 0.5), "delay": _ms(1, 8)}),
)


@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(
    faults=st.lists(FAULTS, min_size=1, max_size=4,
                    unique_by=lambda f: (f["kind"], f["target"], "at" in f)),
    seed=st.integers(0, 10_000),
    store=st.sampled_from(["memory", "sqlite"]),
    servers=st.integers(1, 4),
    clients=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    windows=st.tuples(st.integers(1, 8), st.integers(1, 5)),
    records=st.one_of(st.just(0), st.integers(50, 250)),
    keys=st.integers(1, 30),
    visibility=st.sampled_from(["200ms", "500ms", "1s"]),
    lineage=st.sampled_from(["digest", "full"]),
)
def test_no_fault_schedule_breaks_order_or_contribution(
    faults: list[dict[str, Any]], seed: int, store: str, servers: int,
    clients: tuple[int, int], windows: tuple[int, int], records: int, keys: int,
    visibility: str, lineage: str,
) -> None:
    tiers = [
        {"name": "transform", "kind": "map", "clients": clients[0], "out_keys": 8,
         "process_cost": "8ms"},
        {"name": "summarize", "kind": "reduce", "clients": clients[1], "window": windows[0],
         "out_keys": 3, "process_cost": "3ms"},
        {"name": "aggregate", "kind": "reduce", "clients": 1, "window": windows[1]},
    ]
    with tempfile.TemporaryDirectory() as tmp:
        url = "memory://" if store == "memory" else f"sqlite:///{tmp}/state.db"
        doc = scenario_doc(url, faults=faults, seed=seed, servers=servers, tiers=tiers,
                           source={"records": records, "keys": keys}, max_receives=100,
                           visibility_timeout=visibility, lineage=lineage, rate=500.0,
                           timeout="600s")
        report = run_doc(doc, Path(tmp) / "out")
        assert_all_held(report)
        assert report.metrics["dead_lettered"] == 0
        assert report.extra["result"] == direct_sums(generated(doc))
