"""The ``shardline`` command as a user meets it: version, listing, several files at
once, Ctrl-C, and every error path answered with exit 2 and one message, never a
Python traceback."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from runtime.cli import main
from tests.scenario_helpers import quiet_logs, shardline_command

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"

STREAM = """
[scenario]
name = "{name}"
seed = 3

[stream]
partitions = 2
workers = 2
source = {{ records = {records}, keys = 20 }}
destination = "dir://{{out}}/sink"
"""


@pytest.fixture(autouse=True)
def _quiet() -> None:
    quiet_logs()


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


def _stream(folder: Path, name: str = "cli-stream", records: int = 200) -> Path:
    return _write(folder, name, STREAM.format(name=name, records=records))


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run ``shardline ARGS`` in this process: (exit code, stdout, stderr). An exception
    escaping ``main`` (what would print a traceback) fails the test."""
    try:
        code = main(args)
    except SystemExit as exc:  # argparse's own usage errors and --version
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_version_names_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    code, out, _ = _cli(["--version"], capsys)
    assert code == 0
    assert out.strip() == f"shardline {version('shardline')}"


def test_list_shows_every_installed_system_and_every_shipped_scenario(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    code, out, err = _cli(["list"], capsys)
    assert code == 0, err
    for section in ("stream", "queue", "log", "deploy"):
        assert f"[{section}]" in out
    for path in SCENARIOS.glob("*.toml"):
        line = next(ln for ln in out.splitlines() if path.name in ln)
        section = next(s for s in ("stream", "queue", "log", "deploy")
                       if f"\n[{s}]" in "\n" + path.read_text())
        assert f"[{section}]" in line and "invalid" not in line, line


def test_validate_takes_several_files_and_reports_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = _stream(tmp_path)
    bad = _write(tmp_path, "bad", STREAM.format(name="x", records=5).replace(
        "partitions = 2", "partitions = 0"))
    code, out, err = _cli(["validate", str(good), str(bad)], capsys)
    assert code == 2
    assert f"{good}: valid stream scenario 'cli-stream'" in out
    assert f"{bad}: stream.partitions" in err
    code, out, _ = _cli(["validate", str(good), str(SCENARIOS / "queue_quickstart.toml")],
                        capsys)
    assert code == 0 and out.count(": valid ") == 2


def test_run_takes_several_files_each_in_its_own_output_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = _stream(tmp_path, "one"), _stream(tmp_path, "two", records=300)
    out = tmp_path / "out"
    code, stdout, err = _cli(["run", str(first), str(second), "--out", str(out), "--json"],
                             capsys)
    assert code == 0, err
    reports = [json.loads(line) for line in stdout.splitlines()]
    assert [r["scenario"] for r in reports] == ["one", "two"]
    assert [r["out"] for r in reports] == [str(out / "one"), str(out / "two")]
    assert [r["metrics"]["records_committed"] for r in reports] == [200, 300]


def test_run_refuses_every_file_before_running_any_when_one_is_bad(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = _stream(tmp_path)
    bad = _write(tmp_path, "bad", "[scenario]\n")
    code, out, err = _cli(["run", str(good), str(bad), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and out == ""
    assert f"{bad}: (top level): expected exactly one system table" in err
    assert not (tmp_path / "o").exists()


NOT_UTF8 = b'[scenario]\nname = "caf\xe9"\n'

# name -> (argv with {file} and {tmp} placeholders, file bytes or None, words in stderr)
ERROR_PATHS: dict[str, tuple[list[str], bytes | None, list[str]]] = {
    "no-command": ([], None, ["required"]),
    "unknown-command": (["frobnicate"], None, ["invalid choice"]),
    "run-loud-log-level": (["run", "{file}", "--log-level", "loud"], None,
                           ["--log-level", "'loud'", "choose from"]),
    "serve-loud-log-level": (["serve", "--store", "memory://", "--log-level", "loud"], None,
                             ["--log-level", "'loud'", "choose from"]),
    "run-not-utf8": (["run", "{file}", "--out", "{tmp}/o"], NOT_UTF8,
                     ["{file}: not UTF-8", "0xe9"]),
    "validate-not-utf8": (["validate", "{file}"], NOT_UTF8, ["{file}: not UTF-8", "0xe9"]),
    "validate-missing-file": (["validate", "{tmp}/nope.toml"], None,
                              ["{tmp}/nope.toml: cannot read scenario file"]),
    "run-bad-store-url": (["run", "{file}", "--store", "mysql://x", "--out", "{tmp}/o"],
                          None, ["mysql://x", "unknown scheme"]),
    "run-bad-postgresql-url": (["run", "{file}", "--store", "postgres://x", "--out", "{tmp}/o"],
                               None, ["postgres://x", "expected one database name"]),
    "run-seed-not-a-number": (["run", "{file}", "--seed", "seven"], None,
                              ["--seed", "invalid int value"]),
    "run-fresh-on-a-foreign-directory": (["run", "{file}", "--fresh", "--out", "{tmp}"], None,
                                         ["--fresh", "refusing to delete", "events.jsonl"]),
    "run-several-files-one-store-file": (
        ["run", "{file}", "{file}", "--store", "sqlite:///{tmp}/one.db"], None,
        ["several scenarios cannot share one store"]),
    "bench-unknown": (["bench", "no_such_benchmark"], None, ["unknown benchmark"]),
    "serve-beyond-loopback-without-token": (
        ["serve", "--store", "memory://", "--host", "0.0.0.0"], None,
        ["--host 0.0.0.0 accepts connections from other machines", "--insecure"]),
    "validate-fault-striking-nothing": (
        ["validate", "{file}"],
        (STREAM.format(name="f", records=5) + '[[faults]]\nkind = "crash"\n'
         'target = "nosuch.actor-*"\nat = "1s"\n').encode(),
        ["{file}: faults[0].target", "matches nothing"]),
    "run-store-made-for-another-seed": (
        ["run", "{file}", "--out", "{tmp}/used", "--seed", "9"], None,
        ["was created for another run", "seed: 3 → 9", "--fresh"]),
}


@pytest.mark.parametrize("name", sorted(ERROR_PATHS))
def test_every_error_path_exits_2_with_one_message_and_no_traceback(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(ROOT)
    argv, content, words = ERROR_PATHS[name]
    file = tmp_path / "scenario.toml"
    if content is None:
        _stream(tmp_path, "scenario")
    else:
        file.write_bytes(content)
    (tmp_path / "keep.txt").write_text("a user's own file, not a run's output")
    monkeypatch.delenv("SHARDLINE_TOKEN", raising=False)
    if "used" in " ".join(argv):  # a store made by an earlier run of this file, seed 3
        assert main(["run", str(file), "--out", str(tmp_path / "used"), "--json"]) == 0
        capsys.readouterr()

    def fill(text: str) -> str:
        return text.replace("{file}", str(file)).replace("{tmp}", str(tmp_path))

    code, out, err = _cli([fill(a) for a in argv], capsys)
    assert code == 2, (out, err)
    assert "Traceback" not in out + err
    for word in words:
        assert fill(word) in err, err
    assert (tmp_path / "keep.txt").exists()


def test_ctrl_c_during_run_exits_130_with_one_line_and_the_rerun_resumes(
    tmp_path: Path,
) -> None:
    # 4 s of work on the real clock at 10,000 records/s: SIGINT (≤ 50 ms after the first
    # batch) lands mid-run. Paced, not sized: the default clock is simulated, so a sized
    # run's length was its disk's (on tmpfs all 40,000 records often committed before
    # SIGINT arrived, and the rerun had nothing left to resume).
    records = 40_000
    path, out = _stream(tmp_path, "interrupted", records=records), tmp_path / "out"
    path.write_text(path.read_text().replace("seed = 3\n", "seed = 3\nclock = \"real\"\n")
                    .replace("workers = 2\n", "workers = 2\nrate = 10000.0\n"))
    command = [*shardline_command(), "run", str(path), "--out", str(out), "--json"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=tmp_path)
    deadline = time.monotonic() + 60
    while not list((out / "sink").glob("*")) and time.monotonic() < deadline:
        time.sleep(0.05)  # a real process on the real clock: wait until batches land
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert stdout == ""
    assert stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
    assert "interrupted" in stderr and "run the same command again to resume" in stderr
    rerun = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    report = json.loads(rerun.stdout)
    assert {i["name"]: i["held"] for i in report["invariants"]}["resumed"]
    assert 0 < report["metrics"]["records_committed"] < records


def test_the_printed_report_says_a_simulated_rate_is_per_simulated_second(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _cli(["run", str(_stream(tmp_path)), "--out", str(tmp_path / "o")], capsys)
    assert code == 0, err
    assert "throughput_records_per_simulated_s" in out
    assert "_per_s " not in out
