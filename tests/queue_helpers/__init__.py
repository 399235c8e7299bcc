"""Shared pieces of the queue tests: clusters in simulated time, scenario documents, reports.

Everything goes through the public surface: ``actors.queue`` for clusters
and pipelines, ``parse_scenario`` + ``run_scenario`` (what ``shardline
run`` calls) for scenario documents, which are plain dicts as ``tomllib``
would give them. Runs are simulated and small, each well under a second.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from structlog.testing import capture_logs

import runtime
from actors.queue import Delivery, QueueCluster
from runtime import Fault, Runtime
from runtime.scenario import InvariantResult, Report
from tests import scenario_helpers
from tests.scenario_helpers import invariants as invariants  # re-exported
from tests.scenario_helpers import quiet_logs as quiet_logs

T = TypeVar("T")

CHECKED = ("strict_order", "exactly_once_contribution", "result_matches_oracle", "dead_letters")
"""The queue invariants every pipeline run reports (the oracle with built-in functions)."""

# Three tiers, keys narrowing 40 -> 12 -> 4 -> 4, processing that costs simulated
# time (so faults land mid-batch) and a short visibility timeout (so a crashed or
# paused client's messages come back within the run).
BASE_QUEUE: dict[str, Any] = {
    "servers": 3,
    "visibility_timeout": "500ms",
    "max_receives": 10,
    "source": {"records": 400, "keys": 40},
    "rate": 4000.0,
    "produce_chunk": 40,
    "receive_batch": 10,
    "tiers": [
        {"name": "transform", "kind": "map", "clients": 2, "out_keys": 12,
         "process_cost": "2ms"},
        {"name": "summarize", "kind": "reduce", "clients": 2, "window": 6, "out_keys": 4,
         "process_cost": "2ms"},
        {"name": "aggregate", "kind": "reduce", "clients": 2, "window": 4,
         "process_cost": "2ms"},
    ],
}


def sim(main: Callable[[], Awaitable[T]], seed: int = 0) -> T:
    """Run ``main`` in simulated time (logs captured, not rendered) and return its result."""
    with capture_logs():
        return runtime.run(main, simulated=True, seed=seed)


@asynccontextmanager
async def open_cluster(store: str = "memory://", *, faults: Sequence[Fault] = (),
                       **options: Any) -> AsyncIterator[tuple[Runtime, QueueCluster]]:
    """A started ``QueueCluster`` (defaults: 2 servers, 10 s visibility, 3 receives,
    60 s dedup window) on a fresh runtime; stopped on exit."""
    settings: dict[str, Any] = {"servers": 2, "visibility_timeout": 10.0, "max_receives": 3,
                                "dedup_window": 60.0, **options}
    async with Runtime(store=store, faults=faults) as rt:
        cluster = QueueCluster(rt, **settings)
        await cluster.start()
        try:
            yield rt, cluster
        finally:
            await cluster.stop()


def bodies(deliveries: Sequence[Delivery]) -> dict[str, bytes]:
    """Key -> body of a receive's deliveries (a receive never holds two of one key)."""
    keys = [d.message.key for d in deliveries]
    assert len(keys) == len(set(keys)), f"two messages of one key in one receive: {keys}"
    return {d.message.key: d.message.body for d in deliveries}


async def drain(cluster: QueueCluster, queue: str, *, limit: int = 1000,
                empty: bool = True) -> dict[str, list[bytes]]:
    """Receive and ack until nothing is handed out: the bodies per key in handed-out
    order. With ``empty``, the queue must then hold nothing (no message left out)."""
    taken: dict[str, list[bytes]] = {}
    for _ in range(limit):
        got = await cluster.receive(queue)
        if not got:
            if empty:
                depth = await cluster.depth(queue)
                assert depth.drained, depth
            return taken
        for key, body in bodies(got).items():
            taken.setdefault(key, []).append(body)
        result = await cluster.ack([d.receipt for d in got])
        assert result.acked == len(got) and not result.refused
    raise AssertionError(f"queue {queue!r} not drained after {limit} receives")


def scenario_doc(store: str = "memory://", *, faults: Sequence[Mapping[str, Any]] = (),
                 seed: int = 1, expect: Mapping[str, Any] | None = None,
                 timeout: str = "120s", name: str = "queue-test",
                 **queue: Any) -> dict[str, Any]:
    """A queue scenario document: ``BASE_QUEUE`` with ``queue`` overrides."""
    return {
        "scenario": {"name": name, "seed": seed, "clock": "simulated", "store": store,
                     "timeout": timeout},
        "queue": {**BASE_QUEUE, **queue},
        "faults": [dict(f) for f in faults],
        "expect": dict(expect or {}),
    }


def run_doc(doc: dict[str, Any], out: Path, *, seed: int | None = None) -> Report:
    """Validate and run a document as ``shardline run`` would (log events captured)."""
    return scenario_helpers.run_doc(doc, out, seed=seed, capture=True)


def assert_all_held(report: Report | Mapping[str, Any],
                    checked: Sequence[str] = CHECKED) -> dict[str, InvariantResult]:
    """Every invariant is reported and held (``checked`` and ``finished`` among them),
    and the run passed."""
    return scenario_helpers.assert_all_held(report, (*checked, "finished"))


def direct_sums(items: Sequence[tuple[str, bytes]],
                minus: Sequence[tuple[str, bytes]] = ()) -> dict[str, object]:
    """What the built-in pipeline's result must be, computed here independently."""
    total: Counter[str] = Counter()
    for key, body in items:
        total[key] += int(body)
    for key, body in minus:
        total[key] -= int(body)
    sums = {k: total[k] for k in sorted(total) if total[k] != 0}
    return {"total": sum(sums.values()), "keys": len(sums), "sums": sums}


def generated(doc: Mapping[str, Any], seed: int | None = None) -> list[tuple[str, bytes]]:
    """The originals of a document's built-in source (the ground truth for its result)."""
    from actors.queue import GeneratedSource
    from actors.queue._source import generated_items

    spec = GeneratedSource(**doc["queue"]["source"])
    return list(generated_items(spec, doc["scenario"]["seed"] if seed is None else seed))
