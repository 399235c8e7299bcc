"""The invariant checks are real: a broken stream makes them fail and ``shardline run`` exit 1.

Each test breaks one thing a correct stream relies on (a destination that
loses a write, a process function that is not deterministic, a partition
that applies a late commit without fencing) and runs a scenario file through
the CLI entry point, as a user would.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from actors.stream import Batch, DirectoryDestination
from actors.stream._messages import CommitBatch
from actors.stream._partition import CheckpointReply, Partition
from actors.stream._records import Checkpoint, CommitRecord
from actors.stream._worker import Worker
from runtime.cli import main
from runtime.store import Append, Put
from tests.stream_helpers import invariants, quiet_logs

_encode = msgspec.msgpack.Encoder().encode


@pytest.fixture(autouse=True)
def _quiet() -> None:
    quiet_logs()


def _scenario(tmp_path: Path, *, stream: str = "", faults: str = "") -> Path:
    path = tmp_path / "broken.toml"
    path.write_text(f"""
[scenario]
name = "stream-broken"
seed = 3
store = "sqlite:///{{out}}/state.db"
timeout = "30s"  # a sound run takes ~5 s; a broken one that stalls stops here, not at 10 min

[stream]
partitions = 4
workers = 3
batch_size = 100
lease_ttl = "1s"
rate = 2000.0
batch_cost = "50ms"
produce_chunk = 100
rebalance_interval = "200ms"
source = {{ records = 10000, keys = 100, payload_bytes = 24 }}
destination = "dir://{{out}}/sink"
{stream}
{faults}
""")
    return path


_PAUSE = """
[[faults]]
kind = "pause"
target = "stream.worker-0"
at = "1s"
duration = "3s"
"""


def _run(path: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code = main(["run", str(path), "--json", "--out", str(out)])
    report = json.loads(capsys.readouterr().out)
    return code, report


def test_the_unbroken_scenario_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The control: the same file with nothing broken exits 0 (so the failures below
    are the breakage, not the scenario)."""
    code, report = _run(_scenario(tmp_path, faults=_PAUSE), tmp_path / "out", capsys)
    assert code == 0, report
    assert report["passed"] is True
    assert report["metrics"]["late_commits_refused"] >= 1


def test_a_destination_that_loses_a_write_fails_exactly_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = DirectoryDestination._write
    lost: list[str] = []

    def lossy_write(self: DirectoryDestination, batch: Any) -> None:
        if not lost:  # the first batch is acknowledged but never stored
            lost.append(batch.batch_id)
            return
        real_write(self, batch)

    monkeypatch.setattr(DirectoryDestination, "_write", lossy_write)
    code, report = _run(_scenario(tmp_path), tmp_path / "out", capsys)
    assert code == 1
    assert report["passed"] is False
    found = invariants(report)
    assert not found["exactly_once"].held
    assert "missing at destination" in found["exactly_once"].detail
    assert found["order"].held  # the stream itself did nothing wrong in order


def test_a_destination_that_does_not_write_by_batch_id_fails_exactly_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replays are harmless only because a repeat overwrites the same batch id. A sink
    that stores each delivery under a new id turns the paused worker's late delivery
    of the batch its successor replayed into duplicates."""
    real_write = DirectoryDestination._write
    deliveries = itertools.count()

    def renaming_write(self: DirectoryDestination, batch: Batch) -> None:
        real_write(self, msgspec.structs.replace(
            batch, batch_id=f"{batch.batch_id}-copy{next(deliveries)}"))

    monkeypatch.setattr(DirectoryDestination, "_write", renaming_write)
    code, report = _run(_scenario(tmp_path, faults=_PAUSE), tmp_path / "out", capsys)
    assert code == 1
    assert report["metrics"]["redelivered_batches"] >= 1
    found = invariants(report)
    assert not found["exactly_once"].held
    assert "duplicated at destination" in found["exactly_once"].detail


def test_a_nondeterministic_process_function_fails_exactly_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A replayed batch must equal the first delivery; with a process function whose
    output changes per call the records at the destination are not the source's."""
    stream = 'process = "tests.stream_helpers.user:nondeterministic"'
    code, report = _run(_scenario(tmp_path, stream=stream), tmp_path / "out", capsys)
    assert code == 1
    found = invariants(report)
    assert not found["exactly_once"].held
    assert "altered" in found["exactly_once"].detail


class _TrustingPartition:
    """A broken partition: it applies any commit a worker sends, unfenced and without
    checking that the batch is the pending one."""

    @staticmethod
    async def commit(self: Partition, msg: CommitBatch) -> CheckpointReply:
        record = CommitRecord(msg.batch_id, msg.first_seq, msg.last_seq, msg.token, msg.owner)
        pendings = self.checkpoint.pendings
        ids = [b.batch_id for b in pendings]
        staying = pendings[ids.index(msg.batch_id) + 1:] if msg.batch_id in ids else []
        then = [*staying, *msg.next_pending]
        new = Checkpoint(msg.last_seq + 1, then[0] if then else None, msg.next_chunk, then[1:])
        result = await self.runtime.store.write([
            Put(self.checkpoint_key, _encode(new), None),
            Append(self.commits_log, [(msg.batch_id, _encode(record))]),
        ])
        self.checkpoint = new
        self.checkpoint_version = result.versions[self.checkpoint_key]
        return CheckpointReply(new)


async def _trusted_lease(self: Worker, partition: int, held: object) -> bool:
    return True


def test_a_partition_that_accepts_late_commits_fails_no_stale_commit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under the lease takeover, the paused worker's late commit is applied after its
    successor's: its fencing token goes down in the commit log, and the commits overlap.
    (The worker checks its lease before committing, so it is broken too: it trusts its
    lease and sends the late commit.)"""
    monkeypatch.setattr(Partition, "_commit", _TrustingPartition.commit)
    monkeypatch.setattr(Worker, "_lease_checked", _trusted_lease)
    code, report = _run(_scenario(tmp_path, faults=_PAUSE), tmp_path / "out", capsys)
    assert code == 1
    found = invariants(report)
    assert not found["no_stale_commit"].held, found["no_stale_commit"].detail
    assert "under token" in found["no_stale_commit"].detail
    assert not found["order"].held
