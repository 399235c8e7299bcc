"""Bad scenario files and stores: exit 2, and a message naming the file, the field and
what was expected, from both ``shardline validate`` and ``shardline run``."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import pytest

from runtime.cli import main
from tests.scenario_helpers import assert_bad_file_refused
from tests.stream_helpers import quiet_logs

GOOD = """
[scenario]
name = "errors"
store = "memory://"

[stream]
partitions = 2
source = { records = 50 }
destination = "dir://{out}/sink"
"""


@pytest.fixture(autouse=True)
def _quiet() -> None:
    quiet_logs()


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return path


def _replace(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new)


# name -> (file text, field path in the message, words saying what was expected)
CASES: dict[str, tuple[str, str, list[str]]] = {
    "scenario-without-name": (_replace('name = "errors"\n', ""), "scenario",
                              ["missing required field", "name"]),
    "stream-without-source": (_replace("source = { records = 50 }\n", ""), "stream",
                              ["missing required field", "source"]),
    "wrong-type": (_replace("partitions = 2", 'partitions = "two"'), "stream.partitions",
                   ["Expected `int`", "got `str`"]),
    "unknown-key": (_replace("partitions = 2", "partitons = 2"), "stream",
                    ["unknown field", "partitons"]),
    "unknown-source-key": (_replace("records = 50", "records = 50, kees = 3"),
                           "stream.source", ["unknown field", "kees"]),
    "duration-with-bad-unit": (_replace("partitions = 2", 'partitions = 2\nlease_ttl = "2x"'),
                               "stream.lease_ttl", ["expected a duration", "'2x'"]),
    "duration-without-unit": (_replace("partitions = 2", "partitions = 2\nlease_ttl = 2"),
                              "stream.lease_ttl", ["duration string with a unit", "got 2"]),
    "store-unknown-scheme": (_replace('"memory://"', '"mysql://x"'), "scenario.store",
                       ["unknown scheme 'mysql'", "memory, sqlite"]),
    "store-sqlite-without-path": (_replace('"memory://"', '"sqlite:///"'), "scenario.store",
                                  ["names no database file", "sqlite:///relative/path.db"]),
    "store-redis": (_replace('"memory://"', '"redis://localhost:6379/0"'), "scenario.store",
                    ["redis backend is not available", "memory, sqlite"]),
    "unknown-fault-kind": (GOOD + '[[faults]]\nkind = "explode"\nevery = "1s"\n',
                           "faults[0].kind", ["unknown fault kind 'explode'", "lease_expiry"]),
    "fault-with-two-triggers": (GOOD + '[[faults]]\nkind = "crash"\nevery = "1s"\nat = "2s"\n',
                                "faults[0]", ["exactly one of at, every, probability"]),
    "unknown-table": (GOOD + "[extras]\na = 1\n", "extras", ["unknown table", "stream"]),
    "out-of-range": (_replace("partitions = 2", "partitions = 0"), "stream.partitions",
                     ["integer >= 1", "got 0"]),
    "bad-destination-url": (_replace('"dir://{out}/sink"', '"ftp://host/x"'),
                            "stream.destination", ["'ftp://host/x'", "dir://PATH"]),
    "unresolvable-process": (_replace("partitions = 2", 'partitions = 2\nprocess = "no.such:fn"'),
                             "stream.process", ["'no.such:fn'", "cannot import module"]),
    "process-not-a-function-name": (
        _replace("partitions = 2", 'partitions = 2\nprocess = "json.loads"'),
        "stream.process", ["'json.loads'", "'package.module:function'"]),
    "unresolvable-source": (_replace("{ records = 50 }", '"tests.stream_helpers.user:nope"'),
                            "stream.source", ["has no attribute 'nope'"]),
    "unresolvable-callable-destination": (
        _replace('"dir://{out}/sink"', '"callable:no.such:deliver"'),
        "stream.destination", ["'no.such:deliver'", "cannot import module"]),
}


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_scenario_file_exits_2_naming_file_field_and_expectation(
    case: str, command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, field, expected = CASES[case]
    assert_bad_file_refused(command, _write(tmp_path, text), field, expected,
                            tmp_path / "out", capsys)


def test_the_good_file_is_valid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The control for the cases above: each differs from a file that validates."""
    path = _write(tmp_path, GOOD)
    assert main(["validate", str(path)]) == 0
    assert "valid stream scenario 'errors'" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["validate", "run"])
def test_missing_file_and_invalid_toml(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.toml"
    assert main([command, str(missing)]) == 2
    err = capsys.readouterr().err
    assert f"{missing}: cannot read scenario file" in err and "No such file" in err

    broken = _write(tmp_path, "[scenario\nname = 'x'\n")
    assert main([command, str(broken)]) == 2
    err = capsys.readouterr().err
    assert f"{broken}: not valid TOML" in err and "line 1" in err


def test_unreadable_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, GOOD)
    path.chmod(0)
    if os.access(path, os.R_OK):  # root reads anything; nobody reads a directory as a file
        path = tmp_path / "a-directory.toml"
        path.mkdir()
    assert main(["validate", str(path)]) == 2
    assert f"{path}: cannot read scenario file" in capsys.readouterr().err


def test_bad_store_url_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, GOOD)
    assert main(["run", str(path), "--store", "mysql://x", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "'mysql://x'" in err and "unknown scheme" in err


@pytest.mark.parametrize("content", [b"\x00garbage\xff" * 512,
                                     b"this is not a database at all\n" * 200])
def test_garbage_sqlite_store_exits_2_and_is_left_untouched(
    content: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "out" / "state.db"
    db.parent.mkdir()
    db.write_bytes(content)
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    path = _write(tmp_path, _replace('"memory://"', '"sqlite:///{out}/state.db"'))
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert str(path) in captured.err and str(db) in captured.err
    assert "not a database" in captured.err
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in db.parent.iterdir() if p.name.startswith("state.db")) == [
        "state.db"]  # no -wal or -journal file was created beside it


def test_user_functions_beside_the_scenario_file_resolve(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``process = "mymod:fn"`` names a module next to the file; validate finds it too."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    (tmp_path / "stream_beside_scenario.py").write_text(
        "def keep(record):\n    return record.payload\n")
    path = _write(tmp_path, _replace("partitions = 2",
                                     'partitions = 2\nprocess = "stream_beside_scenario:keep"'))
    assert main(["validate", str(path)]) == 0, capsys.readouterr().err
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--json"]) == 0
    monkeypatch.delitem(sys.modules, "stream_beside_scenario", raising=False)
