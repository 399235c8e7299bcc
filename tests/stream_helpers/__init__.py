"""Shared pieces of the stream tests: scenario documents built in code, runs, sink checks.

Scenario documents are plain dicts (what ``tomllib`` would give) fed to the
public ``parse_scenario`` + ``run_scenario``, so every test goes through the
same validation and runner as ``shardline run``. Runs are simulated (virtual
time, seeded), small (a few thousand records) and take well under a second.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from actors.stream import Batch, GeneratedSource
from actors.stream._source import generated_items
from runtime.scenario import InvariantResult, Report
from tests import scenario_helpers
from tests.scenario_helpers import invariants as invariants  # re-exported
from tests.scenario_helpers import quiet_logs as quiet_logs
from tests.scenario_helpers import run_doc as run_doc

CHECKED = ("exactly_once", "order", "no_stale_commit")

# Small and quick, but with several partitions and workers, batches that cost
# simulated time (so faults land mid-batch) and a short ask timeout (so a lost
# or late message becomes a crash, a restart and a replay within the run).
BASE_STREAM: dict[str, Any] = {
    "partitions": 4,
    "workers": 3,
    "batch_size": 50,
    "lease_ttl": "1s",
    "rate": 2000.0,
    "batch_cost": "10ms",
    "produce_chunk": 100,
    "ask_timeout": "300ms",
    "rebalance_interval": "200ms",
    "source": {"records": 2000, "keys": 100, "payload_bytes": 16},
    "destination": "dir://{out}/sink",
}

_decode_batch = msgspec.json.Decoder(Batch).decode


def scenario_doc(
    store: str,
    *,
    faults: Sequence[Mapping[str, Any]] = (),
    seed: int = 1,
    expect: Mapping[str, Any] | None = None,
    timeout: str = "300s",
    name: str = "stream-test",
    clock: str = "simulated",
    **stream: Any,
) -> dict[str, Any]:
    """A stream scenario document: ``BASE_STREAM`` with ``stream`` overrides."""
    return {
        "scenario": {"name": name, "seed": seed, "clock": clock, "store": store,
                     "timeout": timeout},
        "stream": {**BASE_STREAM, **stream},
        "faults": [dict(f) for f in faults],
        "expect": dict(expect or {}),
    }


def numbers(report: Report) -> dict[str, float]:
    """The report's numeric metrics."""
    return {k: v for k, v in report.metrics.items() if isinstance(v, int | float)}


def assert_all_held(report: Report | Mapping[str, Any]) -> dict[str, InvariantResult]:
    """Every checked invariant is reported and held, and the run passed."""
    return scenario_helpers.assert_all_held(report, CHECKED)


def read_dir_sink(path: Path) -> list[Batch]:
    """Every batch file a ``dir://`` destination holds (temporary files excluded)."""
    return [_decode_batch(f.read_bytes()) for f in sorted(path.glob("*.json"))]


def source_items(records: int, keys: int, payload_bytes: int, seed: int) -> list[tuple[str, bytes]]:
    """What the built-in generator yields: the ground truth a sink is compared with."""
    spec = GeneratedSource(records=records, keys=keys, payload_bytes=payload_bytes)
    return list(generated_items(spec, seed))


def assert_each_once(batches: Iterable[Batch], expected: Iterable[tuple[str, bytes]]) -> None:
    """The sink holds every expected item exactly once, and no sequence number is
    held by two different batch ids (the destination contract)."""
    holders: dict[tuple[int, int], set[str]] = {}
    delivered: Counter[tuple[str, bytes]] = Counter()
    for batch in batches:
        assert [r.seq for r in batch.records] == sorted(r.seq for r in batch.records)
        for record in batch.records:
            assert batch.first_seq <= record.seq <= batch.last_seq, batch.batch_id
            ids = holders.setdefault((batch.partition, record.seq), set())
            if batch.batch_id not in ids:
                ids.add(batch.batch_id)
                delivered[(record.key, record.payload)] += 1
    shared = {at: ids for at, ids in holders.items() if len(ids) > 1}
    assert not shared, f"sequence numbers in two batches: {list(shared.items())[:3]}"
    want = Counter(expected)
    missing = want - delivered
    extra = delivered - want
    assert not missing and not extra, (
        f"{sum(missing.values())} missing (e.g. {list(missing)[:2]}), "
        f"{sum(extra.values())} extra (e.g. {list(extra)[:2]})")
