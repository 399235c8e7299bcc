"""Running again into a used output directory: the same scenario resumes its store, on
all four systems, after a finished run or a ``kill -9``; another scenario, seed or
placement is refused with exit 2 naming the store, the field (old → new) and the way
out; ``--fresh`` deletes the run's store and output first and says so."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from runtime.cli import main
from tests.scenario_helpers import invariants, quiet_logs, rerun_to_completion, shardline_command

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"

STREAM = """
[scenario]
name = "rerun"
seed = 5

[stream]
partitions = {partitions}
workers = 2
source = {{ records = 400, keys = 40 }}
destination = "dir://{{out}}/sink"
"""


@pytest.fixture(autouse=True)
def _quiet() -> None:
    quiet_logs()


def _stream(tmp_path: Path, partitions: int) -> Path:
    path = tmp_path / f"p{partitions}.toml"
    path.write_text(STREAM.format(partitions=partitions))
    return path


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any], str]:
    code = main(["run", *args, "--json"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if captured.out else {}, captured.err


def test_a_store_made_for_other_partitions_is_refused_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code, first, _ = _run(capsys, str(_stream(tmp_path, 4)), "--out", str(out))
    assert code == 0, first
    code, report, err = _run(capsys, str(_stream(tmp_path, 2)), "--out", str(out))
    assert code == 2 and report == {}
    assert f"store sqlite:///{out}/state.db" in err
    assert "stream.partitions: 4 → 2" in err
    assert "--fresh" in err and "Traceback" not in err
    code, report, err = _run(capsys, str(_stream(tmp_path, 4)), "--out", str(out),
                             "--seed", "8")
    assert code == 2 and "seed: 5 → 8" in err
    code, report, err = _run(capsys, str(SCENARIOS / "queue_quickstart.toml"), "--out",
                             str(out))
    assert code == 2 and "system: stream → queue" in err
    code, report, _ = _run(capsys, str(_stream(tmp_path, 4)), "--out", str(out))
    assert code == 0 and invariants(report)["resumed"].held  # the same scenario resumes



@pytest.mark.parametrize(("old", "new", "field"), [
    ('destination = "dir://{out}/sink"', 'destination = "append://{out}/sink2"',
     'stream.destination: "dir://{out}/sink" → "append://{out}/sink2"'),
    ("[stream]\n", '[stream]\nprocess = "rerun_process:drop_odd"\n',
     'stream.process: null → "rerun_process:drop_odd"'),
])
def test_a_store_whose_stream_delivered_elsewhere_or_otherwise_is_refused(
    old: str, new: str, field: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another destination or process function would make the resumed run's check
    read a sink without the earlier runs' batches, or expect other records: it
    reported ``exactly_once`` failing (5000 missing, 2611 unexpected) for no fault."""
    (tmp_path / "rerun_process.py").write_text(
        "def drop_odd(record):\n    return None if record.seq % 2 else record\n")
    out, path = tmp_path / "out", _stream(tmp_path, 4)
    assert _run(capsys, str(path), "--out", str(out))[0] == 0
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    code, report, err = _run(capsys, str(path), "--out", str(out))
    assert code == 2 and report == {}, report.get("invariants")
    assert field in err and "--fresh" in err


def test_fresh_deletes_the_store_and_output_first_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert _run(capsys, str(_stream(tmp_path, 4)), "--out", str(out))[0] == 0
    (out / "sink" / "stale-file").write_text("left by the first run")
    code, report, err = _run(capsys, str(_stream(tmp_path, 2)), "--out", str(out), "--fresh")
    assert code == 0, report
    assert f"deleted store {out}/state.db, output {out}" in err
    assert "resumed" not in invariants(report)
    assert not (out / "sink" / "stale-file").exists()
    assert report["metrics"]["records_committed"] == 400


@pytest.mark.parametrize("scenario", ["log_quickstart.toml", "deploy_quickstart.toml"])
def test_log_and_deploy_resume_like_stream_and_queue(
    scenario: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code, first, _ = _run(capsys, str(SCENARIOS / scenario), "--out", str(out))
    assert code == 0, first["invariants"]
    assert "resumed" not in invariants(first)
    code, second, _ = _run(capsys, str(SCENARIOS / scenario), "--out", str(out))
    assert code == 0, second["invariants"]
    assert invariants(second)["resumed"].held
    if scenario.startswith("log"):
        assert second["log"] == first["log"] == "events"
        assert second["sessions"].keys() == first["sessions"].keys()
        assert second["metrics"]["records_appended"] == first["metrics"]["records_appended"]
        assert second["metrics"]["deliveries"] == first["metrics"]["deliveries"]  # none again
        assert "0 acknowledged appends" in invariants(second)["no_gaps"].detail
    else:
        assert second["deployment"] == first["deployment"]
        assert second["stages"] == first["stages"]  # the stored decisions, not a new rollout


def _has(db: Path, sql: str) -> bool:
    if not db.exists():
        return False
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.1) as conn:
            return bool(conn.execute(sql).fetchone()[0])
    except sqlite3.Error:
        return False


@pytest.mark.parametrize(("scenario", "started"), [
    ("log_server_crash.toml",
     "select count(*) > 2000 from log_entries where log like '%events%'"),
    ("deploy_controller_crash.toml",
     "select count(*) from records where key = 'deploy/deploy-1/state'"),
])
def test_log_and_deploy_resume_after_kill_9(scenario: str, started: str,
                                            tmp_path: Path) -> None:
    out = tmp_path / "out"
    command = [*shardline_command(), "run", str(SCENARIOS / scenario), "--out", str(out), "--json"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd=tmp_path)
    deadline = time.monotonic() + 60
    while not _has(out / "state.db", started) and time.monotonic() < deadline:
        time.sleep(0.02)  # a real process: wait until it is mid-run, then kill it
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL  # killed mid-run, not finished
    report = rerun_to_completion(command, env={}, cwd=tmp_path)
    assert invariants(report)["resumed"].held


def test_fresh_drops_a_postgresql_store_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], postgres_url: Any,
    postgres_server: Any,
) -> None:
    url = postgres_url()
    out = tmp_path / "out"
    assert _run(capsys, str(_stream(tmp_path, 4)), "--out", str(out), "--store", url)[0] == 0
    code, _, err = _run(capsys, str(_stream(tmp_path, 2)), "--out", str(out), "--store", url)
    assert code == 2 and "stream.partitions: 4 → 2" in err
    code, report, err = _run(capsys, str(_stream(tmp_path, 2)), "--out", str(out),
                             "--store", url, "--fresh")
    assert code == 0, report
    assert "deleted store schema" in err and postgres_server.password not in err
    assert "resumed" not in invariants(report)
    assert report["metrics"]["records_committed"] == 400
