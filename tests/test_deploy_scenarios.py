"""The ``[deploy]`` scenarios end to end through ``shardline run`` (simulated time).

Each scenario file states its own expectations (verdicts, outcome, where its
faults landed); these tests also check what the report shows beyond them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runtime import cli

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


def run(capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str, *args: str,
        store: str = "memory://") -> tuple[int, dict[str, Any]]:
    path = name if name.endswith(".toml") and "/" in name else str(SCENARIOS / f"{name}.toml")
    code = cli.main(["run", path, "--json", "--store", store, "--out", str(tmp_path), *args])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else {}


def stages(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(s["kind"], s["config"], s["verdict"]) for s in report["stages"]]


def failed(report: dict[str, Any]) -> list[str]:
    return [i["name"] for i in report["invariants"] if not i["held"]]


def test_quickstart_runs_the_stages_in_order_with_evidence(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, report = run(capsys, tmp_path, "deploy_quickstart",
                       store=f"sqlite:///{tmp_path}/state.db")
    assert code == 0, failed(report)
    assert stages(report) == [
        ("experiment", "config_a", "approved"),
        ("wave", "config_a", "approved"), ("wave", "config_a", "approved"),
        ("wave", "config_a", "approved"),
        ("experiment", "config_b", "rejected"),
    ]
    assert [len(s["hosts"]) for s in report["stages"]] == [6, 1, 2, 6, 6]
    b = report["stages"][-1]
    assert b["version"] == "b2" and b["control_version"] == "b1"
    evidence = b["evidence"]
    assert evidence["n_control"] >= 300 and evidence["n_experiment"] >= 300
    # 1 - confidence over 6 + 3 * 3 planned looks and 2 critical metrics
    assert evidence["alpha"] == pytest.approx(0.02 / (15 * 2))
    assert all(s["evidence"]["alpha"] == evidence["alpha"] for s in report["stages"])
    latency = next(m for m in evidence["metrics"] if m["metric"] == "latency")
    assert latency["failed"] and latency["p_value"] < evidence["alpha"]
    assert latency["effect"] > 0.2 and latency["statistic"] > 0
    assert b["rollback_revision"] is not None and b["rolled_back_at"] > b["decided_at"]
    assert report["approved"] == {"config_a": "a2", "config_b": "b1"}
    assert report["truth"] == {"config_a": "good", "config_b": "bad"}
    names = {i["name"] for i in report["invariants"]}
    assert {"bad_rejected", "good_approved", "exposure_bounded", "ordering",
            "rollback_complete", "converged"} <= names
    exposure = next(i for i in report["invariants"] if i["name"] == "exposure_bounded")
    assert "tolerance = 0.01 + 4 binomial sd" in exposure["detail"]


def test_same_seed_same_run_other_seed_other_run(capsys: pytest.CaptureFixture[str],
                                                 tmp_path: Path) -> None:
    _, first = run(capsys, tmp_path / "a", "deploy_quickstart")
    _, again = run(capsys, tmp_path / "b", "deploy_quickstart")
    _, other = run(capsys, tmp_path / "c", "deploy_quickstart", "--seed", "99")
    assert first["trace_digest"] == again["trace_digest"]
    assert first["stages"] == again["stages"]
    assert other["trace_digest"] != first["trace_digest"]


def test_host_crashes_during_experiment_and_waves(capsys: pytest.CaptureFixture[str],
                                                  tmp_path: Path) -> None:
    code, report = run(capsys, tmp_path, "deploy_host_crash")
    assert code == 0, failed(report)
    kinds = {f["stage_kind"] for f in report["faults"] if f["kind"] == "restart"}
    assert {"experiment", "wave"} <= kinds
    assert report["metrics"]["host_restarts"] >= 4


def test_controller_crash_resumes_the_stage(capsys: pytest.CaptureFixture[str],
                                            tmp_path: Path) -> None:
    code, report = run(capsys, tmp_path, "deploy_controller_crash")
    assert code == 0, failed(report)
    assert report["metrics"]["controller_restarts"] == 2
    assert report["metrics"]["pending_steps_replayed"] >= 1
    # the same deployment without the crashes
    source = (SCENARIOS / "deploy_controller_crash.toml").read_text()
    plain = tmp_path / "plain.toml"
    plain.write_text(source.split("[[faults]]")[0] + "[expect]\n" + source.split("[expect]")[1]
                     .replace("min_controller_restarts = 2", "")
                     .replace("min_replays = 1", "")
                     .replace('faults_during = ["experiment", "wave"]', ""))
    code, baseline = run(capsys, tmp_path / "plain", str(plain))
    assert code == 0, failed(baseline)
    crashed, clean = report["stages"], baseline["stages"]
    assert stages(report) == stages(baseline)
    # crash mid-bake (62.5 s): the bake went on to its stored deadline, not from scratch
    assert crashed[0]["decided_at"] == clean[0]["decided_at"] == pytest.approx(122.5)
    # on (almost) the same data: scheduling around the restart may move a report or two
    for side in ("n_control", "n_experiment"):
        assert crashed[0]["evidence"][side] == pytest.approx(clean[0]["evidence"][side], rel=0.01)
    # crash while assigning wave 3: replayed (every host got it), decided a little later
    assert crashed[3]["hosts"] == clean[3]["hosts"]
    assert clean[3]["decided_at"] < crashed[3]["decided_at"] < clean[3]["decided_at"] + 5


def test_stop_reporting_extends_the_bake_instead_of_approving(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, report = run(capsys, tmp_path, "deploy_stop_reporting")
    assert code == 0, failed(report)
    first = report["stages"][0]
    assert first["verdict"] == "approved" and first["extensions"] >= 1
    assert first["missing_data_looks"] >= 2
    # the silent host resumed at 180 s; no approval before that
    assert first["decided_at"] > 180.0
    for stage in report["stages"]:
        if stage["verdict"] == "approved":
            assert stage["evidence"]["coverage"] == 1.0 and not stage["evidence"]["missing"]


def test_silent_hosts_end_inconclusive_and_roll_back(capsys: pytest.CaptureFixture[str],
                                                     tmp_path: Path) -> None:
    code, report = run(capsys, tmp_path, "deploy_silent_hosts")
    assert code == 0, failed(report)
    assert stages(report) == [("experiment", "config_a", "inconclusive")]
    evidence = report["stages"][0]["evidence"]
    assert "hosts not reporting: 2 of 6" in evidence["missing"]
    assert report["approved"] == {"config_a": "a1"} and report["outcome"] == "rolled back"


def test_silent_hosts_would_fail_good_approved(capsys: pytest.CaptureFixture[str],
                                               tmp_path: Path) -> None:
    """good_approved can fail: with it switched on, the unapproved good change is a failure."""
    source = (SCENARIOS / "deploy_silent_hosts.toml").read_text()
    path = tmp_path / "strict.toml"
    path.write_text(source.replace("good_approved = false", "good_approved = true"))
    code, report = run(capsys, tmp_path / "out", str(path))
    assert code == 1 and failed(report) == ["good_approved"]


def test_metrics_outage_blocks_approval_until_data_returns(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, report = run(capsys, tmp_path, "deploy_metrics_outage")
    assert code == 0, failed(report)
    first = report["stages"][0]
    assert first["verdict"] == "approved" and first["decided_at"] >= 160.0
    assert first["missing_data_looks"] >= 2
    assert report["metrics"]["metrics_calls_failed"] > 0
    assert report["metrics"]["requests_unreported"] < 100  # buffered, not dropped


def test_regression_in_a_wave_rolls_the_promotion_back(capsys: pytest.CaptureFixture[str],
                                                      tmp_path: Path) -> None:
    code, report = run(capsys, tmp_path, "deploy_wave_regression")
    assert code == 0, failed(report)
    assert stages(report) == [("experiment", "config_a", "approved"),
                              ("wave", "config_a", "rejected")]
    wave = report["stages"][1]
    assert wave["hosts"] and wave["rolled_back_at"] - wave["decided_at"] < 10
    assert report["approved"] == {"config_a": "a1", "config_b": "b1"}


def test_wrong_ground_truth_fails_bad_rejected(capsys: pytest.CaptureFixture[str],
                                              tmp_path: Path) -> None:
    """An invariant that can fail: declare the good config_a bad and the run must fail."""
    source = (SCENARIOS / "deploy_quickstart.toml").read_text()
    path = tmp_path / "lie.toml"
    path.write_text(source.replace("[expect]\n", '[expect]\ntruth = { config_a = "bad" }\n'))
    code, report = run(capsys, tmp_path / "out", str(path))
    assert code == 1 and failed(report) == ["bad_rejected"]


BASE = """
[scenario]
name = "bad"
[deploy]
hosts = 3
model = { versions = { a1 = {}, a2 = {} } }
[[deploy.configs]]
name = "config_a"
control = "a1"
experimental = "a2"
"""


@pytest.mark.parametrize(("extra", "message"), [
    ("[deploy.analysis]\nwaves = [0.25, 0.5]\n",
     "deploy.analysis.waves: the last wave must be 1.0"),
    ("[deploy.analysis]\nbake = 60\n", "deploy.analysis.bake: expected a duration"),
    ("[deploy.analysis]\nfraction = 1.5\n", "deploy.analysis.fraction"),
    ("[deploy.analysis]\ncritical = [\"cpu\"]\n", "deploy.analysis.critical"),
    ('[expect]\nverdicts = { config_z = "approved" }\n',
     "expect.verdicts: 'config_z' is not a configuration"),
    ('[[faults]]\nkind = "stop_everything"\nat = "1s"\n', "faults[0].kind: unknown fault kind"),
])
def test_bad_input_names_the_field(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                   extra: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(BASE + extra)
    assert cli.main(["validate", str(path)]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(("old", "new", "message"), [
    (", a2 = {}", "", "deploy.model.versions: no entry for version 'a2'"),
    ("model = { versions = { a1 = {}, a2 = {} } }", 'model = "no_such_module:fn"',
     "deploy.model: service model 'no_such_module:fn': cannot import"),
    ("model = { versions = { a1 = {}, a2 = {} } }",
     'model = "operator:add"\n[expect]\nbad_rejected = true',
     "expect.truth: the model 'operator:add' has no built-in ground truth"),
    ('experimental = "a2"', 'experimental = "a1"', "equals the control version"),
    ("hosts = 3", "hosts = 0", "deploy.hosts: Expected `int` >= 1"),
])
def test_bad_config_names_the_field(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                    old: str, new: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(BASE.replace(old, new))
    assert cli.main(["validate", str(path)]) == 2
    assert message in capsys.readouterr().err


_FAULTS_AT_CHECK_TIME = """
[[faults]]
kind = "store_error"
target = "store.*"
probability = 0.2

[[faults]]
kind = "crash"
target = "deploy.host-*"
every = "1s"
all = true
"""


def test_store_errors_and_crashes_while_checking_are_not_the_run_failing(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """One store call in five fails and every host crashes every second, also while the
    runner reads the deployment state and asks what the hosts run (issue #10: an
    injected store error escaped as exit 2 "bad input", an injected crash of the host
    asked for its status as a traceback). Setup bookkeeping and checks read the store
    without injected faults; a host's status is asked again after a crash."""
    text = (SCENARIOS / "deploy_host_crash.toml").read_text()
    text = text[:text.index("[[faults]]")] + _FAULTS_AT_CHECK_TIME + '[expect]\nconverged = true\n'
    path = tmp_path / "deploy_faults_at_check_time.toml"
    path.write_text(text)
    code, report = run(capsys, tmp_path, str(path), "--seed", "2")
    assert code in (0, 1) and report, "no report"
    held = {i["name"]: i["held"] for i in report["invariants"]}
    assert held["converged"] and held["rollback_complete"], report["invariants"]
    assert report["metrics"]["host_restarts"] >= 100
