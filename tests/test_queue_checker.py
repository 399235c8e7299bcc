"""The queue invariants are real: a broken pipeline makes them fail and ``shardline run``
exit 1; and the report can follow an original to its final aggregate.

Each test breaks one thing a correct pipeline relies on (a client that acks
an input without passing it on, one that passes it on twice under a fresh
id, a producer that reorders a key's originals, a server that hands out a
second message of a key while one is out, a server that loses its dead
letters) and runs a scenario file through the CLI entry point.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from actors.queue import (
    QueueCluster,
    QueuedMessage,
    Receipt,
    Taken,
    original_id,
    output_id,
)
from actors.queue._keys import KeyState
from actors.queue._server import QueueServer
from actors.queue._state import ServerState
from actors.queue._tiers import MapClient
from runtime.cli import main
from tests.queue_helpers import invariants, quiet_logs

Report = dict[str, Any]


@pytest.fixture(autouse=True)
def _quiet() -> None:
    quiet_logs()  # tests/conftest.py puts the configuration back


def _scenario(tmp_path: Path, queue: str = "", faults: str = "",
              transform_cost: str = "2ms") -> Path:
    path = tmp_path / "broken.toml"
    path.write_text(f"""
[scenario]
name = "queue-broken"
seed = 3
store = "sqlite:///{{out}}/state.db"
timeout = "20s"  # a sound run takes ~0.5 s; a broken one that stalls stops here, not at 10 min

[queue]
servers = 3
visibility_timeout = "500ms"
max_receives = 3
source = {{ records = 400, keys = 30 }}
rate = 4000.0
produce_chunk = 40
receive_batch = 10
{queue}

[[queue.tiers]]
name = "transform"
kind = "map"
clients = 2
out_keys = 10
process_cost = "{transform_cost}"

[[queue.tiers]]
name = "summarize"
kind = "reduce"
clients = 2
window = 6
out_keys = 3
process_cost = "2ms"

[[queue.tiers]]
name = "aggregate"
kind = "reduce"
window = 4
{faults}
""")
    return path


def _run(path: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, Report]:
    code = main(["run", str(path), "--json", "--out", str(out)])
    report: Report = json.loads(capsys.readouterr().out)
    return code, report


def _failed(report: Report) -> set[str]:
    return {name for name, i in invariants(report).items() if not i.held}


def test_the_unbroken_scenario_passes(tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """The control: the same file with nothing broken exits 0."""
    code, report = _run(_scenario(tmp_path), tmp_path / "out", capsys)
    assert code == 0, report["invariants"]
    assert report["passed"] is True and not _failed(report)
    assert {"strict_order", "exactly_once_contribution", "result_matches_oracle",
            "dead_letters"} <= set(invariants(report))


def test_a_client_that_acks_an_input_it_never_passed_on_fails_the_ledger(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = MapClient.handle
    lost: list[Receipt] = []

    def without(taken: Taken, i: int) -> Taken:
        """``taken`` less its batch ``i``."""
        start, count = taken.starts()[i], taken.counts[i]
        def drop(column: list[Any]) -> list[Any]:
            return column[:i] + column[i + 1:]
        return Taken(taken.server, taken.queue, drop(taken.keys), drop(taken.offsets),
                     drop(taken.attempts), drop(taken.counts),
                     taken.messages[:start] + taken.messages[start + count:],
                     taken.message_offsets[:start] + taken.message_offsets[start + count:])

    async def lossy(self: MapClient, takes: list[Taken]) -> None:
        lone = [(t, i) for t in takes for i, count in enumerate(t.counts) if count == 1]
        if not lost and self.queue == "transform" and lone:
            taken, i = lone[0]
            lost.append(taken.receipt(i))
            await self.cluster.ack(lost)
            takes = [without(t, i) if t is taken else t for t in takes]
            takes = [t for t in takes if t.keys]
        await real(self, takes)

    monkeypatch.setattr(MapClient, "handle", lossy)
    code, report = _run(_scenario(tmp_path), tmp_path / "out", capsys)
    assert code == 1 and report["passed"] is False and lost
    found = invariants(report)
    assert _failed(report) == {"exactly_once_contribution", "result_matches_oracle"}
    detail = found["exactly_once_contribution"].detail
    assert "count 399" in detail and "1 originals missing" in detail
    assert found["strict_order"].held and found["dead_letters"].held


def test_a_client_that_passes_an_input_on_twice_fails_the_ledger(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy under a fresh id is not a duplicate the queue can drop: the original
    would count twice, and the checker must say so."""
    real = QueueCluster.enqueue
    copied: list[str] = []

    async def doubling(self: QueueCluster, queue: str, messages: Any, retry: Any = None) -> Any:
        if queue == "summarize" and not copied and messages:
            first: QueuedMessage = messages[0]
            copied.append(first.id)
            messages = [*messages, msgspec.structs.replace(first, id=first.id[::-1])]
        return await real(self, queue, messages, retry)

    monkeypatch.setattr(QueueCluster, "enqueue", doubling)
    code, report = _run(_scenario(tmp_path), tmp_path / "out", capsys)
    assert code == 1 and copied
    found = invariants(report)
    assert _failed(report) == {"exactly_once_contribution", "result_matches_oracle"}
    detail = found["exactly_once_contribution"].detail
    assert "count 401" in detail and "counted more than once" in detail


def test_a_producer_that_reorders_a_keys_originals_fails_strict_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = QueueCluster.enqueue

    async def reversing(self: QueueCluster, queue: str, messages: Any, retry: Any = None) -> Any:
        if queue == "transform":
            messages = list(reversed(messages))
        return await real(self, queue, messages, retry)

    monkeypatch.setattr(QueueCluster, "enqueue", reversing)
    code, report = _run(_scenario(tmp_path), tmp_path / "out", capsys)
    assert code == 1
    found = invariants(report)
    assert not found["strict_order"].held
    assert "enqueued after" in found["strict_order"].detail
    # every original still arrived exactly once: only the order is wrong
    assert found["exactly_once_contribution"].held


def test_a_server_that_hands_out_a_second_message_of_a_busy_key_fails_strict_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that forgets a key's head is out makes the key ready again when more of
    it arrives, and hands the head out a second time while the first is still out.
    Transform batches stay out 20 ms while chunks arrive every 10 ms, so more of a
    key arrives while its batch is out whatever the producer's rhythm."""
    path = _scenario(tmp_path, transform_cost="20ms")
    control, report = _run(path, tmp_path / "control", capsys)
    assert control == 0, report["invariants"]
    monkeypatch.setattr(KeyState, "deliverable", property(lambda self: bool(self.offsets)))
    real_enqueued = ServerState._apply_enqueued

    def forgetting(self: ServerState, e: Any, *args: Any) -> None:
        real_enqueued(self, e, *args)
        q = self.queues[e.queue]
        for message in e.messages:  # the buggy make_ready re-adds a key that is out
            q.make_ready(q.keys[message.key])

    monkeypatch.setattr(ServerState, "_apply_enqueued", forgetting)
    code, report = _run(path, tmp_path / "out", capsys)
    assert code == 1
    found = invariants(report)
    assert not found["strict_order"].held
    assert "delivered while the batch from @" in found["strict_order"].detail


def test_a_server_that_loses_its_dead_letters_fails_dead_letters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(QueueServer, "_dead_letters", lambda self, events: [])
    poison = 'poison = { key = "key-00000?", body = "*3" }'
    code, report = _run(_scenario(tmp_path, queue=poison), tmp_path / "out", capsys)
    assert code == 1
    found = invariants(report)
    assert not found["dead_letters"].held
    assert "dead-letter logs hold 0" in found["dead_letters"].detail
    # and without them listed, the ledger cannot count them out: it does not balance
    assert not found["exactly_once_contribution"].held
    assert report["metrics"]["dead_lettered"] >= 1 and report["dead_letters"] == []


def test_dead_letters_are_counted_out_explicitly(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The control for the test above: the same poison, nothing broken."""
    poison = 'poison = { key = "key-00000?", body = "*3" }'
    code, report = _run(_scenario(tmp_path, queue=poison), tmp_path / "out", capsys)
    assert code == 0, report["invariants"]
    dead = report["dead_letters"]
    assert dead and all(d["counted_out"] and d["receives"] == 3 for d in dead)
    ledger = report["ledger"]
    assert ledger["dead_letters_counted_out"]["count"] == len(dead)
    assert ledger["final"]["count"] == 400 - len(dead)


def test_full_lineage_names_each_originals_final_aggregate_and_intermediates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    queue = 'lineage = "full"\nlineage_samples = 2'
    code, report = _run(_scenario(tmp_path, queue=queue), tmp_path / "out", capsys)
    assert code == 0, report["invariants"]
    assert "exact ids match" in invariants(report)["exactly_once_contribution"].detail
    lines = Path(report["lineage_file"]).read_text().splitlines()
    samples = [json.loads(line) for line in lines]
    assert [s["index"] for s in samples] == list(range(400))  # every original, in the file
    assert report["lineage"] == samples[:2]  # and the first few in the report
    finals: set[str] = set()
    for s in samples:
        assert s["original"] == original_id("queue", s["index"]) and s["verified"]
        transform, summarize, aggregate = s["through"]
        # the map's output id derives from the original alone, the rest from windows
        assert transform["made_by"] == "transform" and transform["queue"] == "summarize"
        assert transform["id"] == output_id("transform", [s["original"]])
        assert summarize["made_by"] == "summarize" and summarize["queue"] == "aggregate"
        assert aggregate["made_by"] == "aggregate" and aggregate["queue"] == "final"
        assert aggregate["id"] == s["final_aggregate"]
        finals.add(s["final_aggregate"])
    tiers = {t["name"]: t for t in report["tiers"]}
    assert len(finals) == tiers["aggregate"]["messages_out"]
