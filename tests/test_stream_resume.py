"""Running a scenario again resumes it; the same seed replays the same run.

Resume goes through ``shardline run`` in-process (``runtime.cli.main``) against
one ``--out``; determinism runs separate ``shardline`` processes, because a
digest that only matched inside one interpreter would prove little.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from runtime.cli import main
from tests.scenario_helpers import shardline_command
from tests.stream_helpers import (
    assert_all_held,
    assert_each_once,
    invariants,
    quiet_logs,
    read_dir_sink,
    source_items,
)

RECORDS, KEYS, PAYLOAD, SEED = 3000, 120, 24, 7


def _scenario(tmp_path: Path, *, timeout: str = "600s", name: str = "resume.toml") -> Path:
    path = tmp_path / name
    path.write_text(f"""
[scenario]
name = "stream-resume"
seed = {SEED}
store = "sqlite:///{{out}}/state.db"
timeout = "{timeout}"

[stream]
partitions = 4
workers = 3
batch_size = 100
lease_ttl = "1s"
rate = 3000.0
batch_cost = "10ms"
produce_chunk = 100
ask_timeout = "300ms"
source = {{ records = {RECORDS}, keys = {KEYS}, payload_bytes = {PAYLOAD} }}
destination = "dir://{{out}}/sink"

[[faults]]
kind = "crash"
target = "stream.worker-*"
every = "150ms"

[[faults]]
kind = "store_error"
target = "store.*"
probability = 0.01

[[faults]]
kind = "destination_error"
target = "*"
probability = 0.1
""")
    return path


@pytest.fixture(autouse=True)
def _quiet() -> None:
    quiet_logs()


def _run(path: Path, out: Path, capsys: pytest.CaptureFixture[str],
         *extra: str) -> tuple[int, dict[str, Any]]:
    code = main(["run", str(path), "--out", str(out), "--json", *extra])
    return code, json.loads(capsys.readouterr().out)


def test_running_twice_against_the_same_out_resumes_and_keeps_each_record_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, out = _scenario(tmp_path), tmp_path / "out"
    code, first = _run(path, out, capsys)
    assert code == 0, first
    assert "resumed" not in invariants(first)
    code, second = _run(path, out, capsys)
    assert code == 0, second
    found = assert_all_held(second)
    assert found["resumed"].held
    assert second["metrics"]["records_produced"] == 0  # the source was not appended again
    assert second["metrics"]["records_delivered"] == 0  # nothing was committed twice
    assert_each_once(read_dir_sink(out / "sink"), source_items(RECORDS, KEYS, PAYLOAD, SEED))


def test_a_run_cut_short_is_finished_by_the_next(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The first run hits its timeout half-way (exit 1, ``finished`` fails); the full
    scenario then resumes from the committed checkpoints and passes."""
    out = tmp_path / "out"
    code, cut = _run(_scenario(tmp_path, timeout="500ms", name="cut.toml"), out, capsys)
    assert code == 1
    assert not invariants(cut)["finished"].held
    assert 0 < cut["metrics"]["records_committed"] < RECORDS
    code, rest = _run(_scenario(tmp_path), out, capsys)
    assert code == 0, rest
    assert invariants(rest)["resumed"].held
    assert cut["metrics"]["records_committed"] + rest["metrics"]["records_committed"] == RECORDS
    assert_each_once(read_dir_sink(out / "sink"), source_items(RECORDS, KEYS, PAYLOAD, SEED))


def _shardline(path: Path, out: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*shardline_command(), "run", str(path), "--out", str(out), "--json",
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_same_seed_same_trace_digest_in_separate_processes(tmp_path: Path) -> None:
    path = _scenario(tmp_path)
    runs = {
        "a": _shardline(path, tmp_path / "a"),
        "b": _shardline(path, tmp_path / "b"),
        "other-seed": _shardline(path, tmp_path / "c", "--seed", str(SEED + 1)),
    }
    reports = {}
    for name, proc in runs.items():
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
        reports[name] = json.loads(stdout)
    a, b, other = reports["a"], reports["b"], reports["other-seed"]
    assert a["seed"] == b["seed"] == SEED and other["seed"] == SEED + 1
    assert a["trace_digest"] == b["trace_digest"]
    assert a["metrics"] == b["metrics"]  # restarts, faults, recovery times: all replayed
    assert a["metrics"]["faults_injected"] > 0
    assert other["trace_digest"] != a["trace_digest"]
