"""Every shipped stream scenario passes, with the fault-exercise floors its file sets.

A change in how the stream reacts to a fault (say, where a pause strikes)
can leave a scenario's fault without effect; this run of each file says so.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from tests.stream_helpers import assert_all_held, quiet_logs, run_doc

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


@pytest.fixture(autouse=True)
def _quiet() -> None:
    quiet_logs()


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("stream_*.toml")), ids=lambda p: p.stem)
def test_shipped_stream_scenario_passes(path: Path, tmp_path: Path) -> None:
    doc = tomllib.loads(path.read_text())
    report = run_doc(doc, tmp_path / "out")
    found = assert_all_held(report)
    floors = [k for k, v in doc.get("expect", {}).items() if k.startswith("min_") and v]
    for floor in floors:
        assert found[f"exercised_{floor.removeprefix('min_')}"].held
    assert report.passed
