"""``append://``: one file per partition, each batch once, across replays and crashes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import runtime
from actors.stream import AppendDestination, Batch
from tests.stream_helpers import (
    BASE_STREAM,
    assert_all_held,
    assert_each_once,
    numbers,
    quiet_logs,
    run_doc,
    scenario_doc,
    source_items,
)


@pytest.fixture(autouse=True)
def _quiet() -> None:
    quiet_logs()


def _batch(first: int, last: int, partition: int = 3) -> Batch:
    seqs = list(range(first, last + 1))
    return Batch(f"s-p{partition:03d}-{first:012d}-{last:012d}", partition, first, last, seqs,
                 [f"k{s}" for s in seqs], [b"v%d" % s for s in seqs])


def _deliver(path: Path, *batches: Batch) -> list[Batch]:
    async def main() -> list[Batch]:
        destination = AppendDestination(path, threaded=False)
        for batch in batches:
            await destination.deliver(batch)
        found = list(destination.batches())
        await destination.close()
        return found

    found: list[Batch] = runtime.run(main, simulated=True)
    return found


def test_a_repeat_or_a_late_earlier_batch_is_not_appended_again(tmp_path: Path) -> None:
    first, second = _batch(0, 9), _batch(10, 19)
    assert _deliver(tmp_path, first, first, second, first, second) == [first, second]
    # a new destination on the same files reads where they end
    assert _deliver(tmp_path, second, _batch(20, 24)) == [first, second, _batch(20, 24)]
    assert len(list(tmp_path.glob("*.jsonl"))) == 1


def test_a_line_cut_short_by_a_crash_is_cut_away(tmp_path: Path) -> None:
    first, second = _batch(0, 9), _batch(10, 19)
    _deliver(tmp_path, first, second)
    (file,) = tmp_path.glob("*.jsonl")
    data = file.read_bytes()
    file.write_bytes(data[: len(data) - 7])  # the second line, partly written
    assert _deliver(tmp_path, second) == [first, second]
    assert file.read_bytes() == data


def test_an_overlapping_batch_is_refused(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="overlaps"):
        _deliver(tmp_path, _batch(0, 9), _batch(5, 14))


@pytest.mark.parametrize(("faults", "seed", "cost"), [
    ([{"kind": "crash", "target": "stream.worker-*", "every": "60ms"}], 4, "20ms"),
    ([{"kind": "pause", "target": "stream.worker-0", "at": "1s", "duration": "3s"}], 3, "50ms"),
    ([{"kind": "destination_error", "target": "*", "probability": 0.3}], 4, "20ms"),
], ids=["crash-workers", "pause-takeover", "destination-error"])
def test_append_destination_holds_each_record_once_under_faults(
        tmp_path: Path, faults: list[dict[str, Any]], seed: int, cost: str) -> None:
    src = {**BASE_STREAM["source"], "records": 10_000}
    doc = scenario_doc("memory://", seed=seed, faults=faults, batch_cost=cost,
                       destination="append://{out}/sink", source=src)
    report = run_doc(doc, tmp_path / "out")
    assert_all_held(report)
    assert numbers(report)["redelivered_batches"] >= 1
    batches = list(AppendDestination(tmp_path / "out" / "sink", threaded=False).batches())
    assert_each_once(batches, source_items(src["records"], src["keys"], src["payload_bytes"],
                                           seed=seed))
