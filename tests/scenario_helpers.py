"""What every system's scenario tests share: quiet logs, runs of in-code documents,
reading invariants, and the bad-file contract of ``shardline validate/run``.

Documents are plain dicts (what ``tomllib`` would give) fed to the public
``parse_scenario`` + ``run_scenario``, the same path as ``shardline run``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from runtime import configure_logging
from runtime.cli import main
from runtime.scenario import InvariantResult, Report, parse_scenario, run_scenario


def quiet_logs() -> None:
    """Send the runtime's events nowhere (a crash storm would print thousands of
    tracebacks); ``tests/conftest.py`` puts the configuration back after the test."""
    configure_logging(json=True, level="critical", stream=open(os.devnull, "w"))  # noqa: SIM115


def run_doc(doc: dict[str, Any], out: Path, *, seed: int | None = None,
            capture: bool = False) -> Report:
    """Validate and run a document as ``shardline run`` would, with ``out`` as --out;
    with ``capture`` the run's log events are captured rather than rendered."""
    loaded = parse_scenario(doc, str(out / "scenario.toml"))
    if not capture:
        return run_scenario(loaded, out=out, seed=seed)
    with capture_logs():
        return run_scenario(loaded, out=out, seed=seed)


def invariants(report: Report | Mapping[str, Any]) -> dict[str, InvariantResult]:
    """Invariants by name, from a ``Report`` or a ``--json`` object."""
    if isinstance(report, Report):
        return {i.name: i for i in report.invariants}
    return {i["name"]: InvariantResult(i["name"], i["held"], i["detail"])
            for i in report["invariants"]}


def assert_all_held(report: Report | Mapping[str, Any],
                    checked: Sequence[str]) -> dict[str, InvariantResult]:
    """Every invariant is reported and held (``checked`` among them), and the run passed."""
    found = invariants(report)
    failed = {n: i.detail for n, i in found.items() if not i.held}
    assert not failed, failed
    for name in checked:
        assert name in found, f"{name} not reported; got {sorted(found)}"
    passed = report.passed if isinstance(report, Report) else report["passed"]
    assert passed
    return found


def shardline_command() -> list[str]:
    """How to start ``shardline`` as its own process from this interpreter's venv."""
    script = Path(sys.executable).with_name("shardline")
    return [str(script)] if script.exists() else [sys.executable, "-m", "runtime.cli"]


def rerun_to_completion(command: Sequence[str], env: Mapping[str, str],
                        cwd: Path) -> dict[str, Any]:
    """Run ``shardline run ... --json`` again after kills (up to 3 tries, each may still
    find a half-finished store) and return its report, which must have passed."""
    for _attempt in range(3):
        result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd,
                                timeout=90)
        if result.returncode == 0:
            break
    assert result.returncode == 0, result.stdout + result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    assert report["passed"] is True
    return report


def assert_bad_file_refused(command: str, path: Path, field: str, expected: Sequence[str],
                            out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``shardline validate|run`` exits 2, prints nothing on stdout, and its error
    names the file, the field path and each of the ``expected`` phrases."""
    args = [command, str(path)] + (["--out", str(out)] if command == "run" else [])
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"{path}: {field}: " in captured.err, captured.err
    for words in expected:
        assert words in captured.err, captured.err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    """``shardline run ARGV --json`` in this process: its report, which must pass
    (exit 0; a failure names the invariants that did not hold)."""
    code = main(["run", *argv, "--json"])
    captured = capsys.readouterr()
    assert captured.out, captured.err
    report: dict[str, Any] = json.loads(captured.out)
    failed = {i["name"]: i["detail"] for i in report["invariants"] if not i["held"]}
    assert code == 0 and not failed, failed or captured.err
    return report


def with_faults(path: Path, faults: str, out: Path, *, expect: str | None = None) -> Path:
    """A copy of scenario ``path`` in ``out`` whose ``[[faults]]`` are ``faults`` (TOML
    text), and, given ``expect``, whose ``[expect]`` table is that text instead."""
    text = path.read_text()
    rest = text[text.index("[expect]"):] if expect is None else expect
    copy = out / f"faults-{path.name}"
    copy.write_text(text[:text.index("[[faults]]")] + faults + "\n" + rest)
    return copy
