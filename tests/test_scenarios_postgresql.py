"""Every scenario in ``scenarios/`` passes with ``--store postgresql://...``.

Each runs through the command line (``shardline run FILE --store URL``) on a
fresh schema of the session's throwaway server. One scenario per system
runs in the default suite; the rest carry the ``all_scenarios_postgresql``
marker, which the default ``pytest -q`` deselects (they take minutes) and
``.ci/run`` runs as a second step, so CI runs every one of them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from runtime.cli import main

SCENARIOS = sorted((Path(__file__).resolve().parents[1] / "scenarios").glob("*.toml"))
IN_DEFAULT_SUITE = {"deploy_wave_regression", "log_store_errors", "queue_store_errors",
                    "stream_lease_takeover"}


@pytest.mark.parametrize("path", [
    pytest.param(path, id=path.stem, marks=() if path.stem in IN_DEFAULT_SUITE
                 else pytest.mark.all_scenarios_postgresql)
    for path in SCENARIOS
])
def test_scenario_passes_on_postgresql(
    path: Path, postgres_url: Callable[..., str], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["run", str(path), "--store", postgres_url(), "--out", str(tmp_path),
                 "--json"])
    captured = capsys.readouterr()
    assert captured.out, captured.err
    report = json.loads(captured.out)
    failed = {i["name"]: i["detail"] for i in report["invariants"] if not i["held"]}
    assert code == 0 and report["passed"], failed or captured.err
    assert report["store"].startswith("postgresql://postgres:***@127.0.0.1:")


def test_every_system_has_a_scenario_in_the_default_suite() -> None:
    stems = {path.stem for path in SCENARIOS}
    assert IN_DEFAULT_SUITE <= stems
    assert {stem.split("_")[0] for stem in IN_DEFAULT_SUITE} == {
        stem.split("_")[0] for stem in stems}
