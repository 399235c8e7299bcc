"""Deploy's probe: the sampler reads the requests the fleet served and their latencies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime import cli

QUICKSTART = Path(__file__).parent.parent / "scenarios" / "deploy_quickstart.toml"


def test_a_sampled_deploy_run_reports_request_latency_per_bucket(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = QUICKSTART.read_text().replace('clock = "simulated"',
                                          'clock = "simulated"\nsamples = "30s"')
    path = tmp_path / "sampled_deploy.toml"
    path.write_text(text.replace('store = "sqlite:///{out}/state.db"', 'store = "memory://"'))
    capsys.readouterr()
    assert cli.main(["run", str(path), "--out", str(tmp_path / "out"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    rows = [json.loads(line) for line in (tmp_path / "out" / "samples.jsonl").open()]
    with_latency = [r for r in rows if r["p50"] is not None]
    assert len(with_latency) >= len(rows) - 1 >= 10  # the fleet serves all along
    assert all(0 < r["p50"] <= r["p99"] <= r["max"] for r in with_latency)
    latency = report["latency"]
    assert latency["count"] == sum(r["latency_count"] for r in rows)
    assert latency["count"] > 0.98 * rows[-1]["completed"]  # all but the ~0.5 % errors
    assert 0.030 < latency["p50"] < 0.050  # the model's median request: 40 ms
