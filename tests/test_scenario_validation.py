"""What ``shardline validate`` refuses before a run can go wrong, across the systems:
fault targets that strike nothing, sizes past their bounds, names that are not
identifiers, durations without units (everywhere, backoffs included), a deploy
timeout shorter than its plan; and what it lets through: a user's deploy model
without ground truth (verdicts are reported, not judged)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from actors.stream import StreamConfig
from runtime.cli import main
from tests.scenario_helpers import assert_all_held, assert_bad_file_refused, quiet_logs

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"

STREAM = """
[scenario]
name = "checked"
store = "memory://"

[stream]
partitions = 2
workers = 2
source = { records = 200, keys = 20 }
destination = "dir://{out}/sink"
"""

FAULT = """
[[faults]]
kind = "%s"
target = "%s"
every = "1s"
"""


@pytest.fixture(autouse=True)
def _quiet() -> None:
    quiet_logs()


def _write(tmp_path: Path, text: str, name: str = "scenario.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _shipped(name: str) -> str:
    return (SCENARIOS / name).read_text()


# (scenario text, fault kind, target, a name the message lists as what exists)
NO_SUCH_TARGET = {
    "stream-no-such-actor": (STREAM, "crash", "nosuch.actor-*", "stream.worker-1"),
    "stream-broken-glob": (STREAM, "crash", "stream.worker-[*", "stream.partition-0"),
    "store-no-such-operation": (STREAM, "store_error", "store.explode", "store.write"),
    "stream-worker-past-the-count": (STREAM, "pause", "stream.worker-2", "stream.worker-1"),
    "stream-lease-on-a-worker": (STREAM, "lease_expiry", "stream.worker-*",
                                 "stream.partition-1"),
    "queue-no-such-tier": (_shipped("queue_quickstart.toml"), "crash", "queue.nosuch-*",
                           "queue.transform-0"),
    "log-no-such-reader": (_shipped("log_quickstart.toml"), "crash", "reader.s9.*",
                           "reader.s0.c0"),
    "log-slow-on-the-server": (_shipped("log_quickstart.toml"), "slow", "logserver.*",
                               "reader.s0.c1"),
    "deploy-no-such-host": (_shipped("deploy_quickstart.toml"), "crash", "deploy.host-6",
                            "deploy.host-5"),
}


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("case", sorted(NO_SUCH_TARGET))
def test_a_fault_whose_target_matches_nothing_is_refused(
    case: str, command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, kind, target, existing = NO_SUCH_TARGET[case]
    path = _write(tmp_path, text + FAULT % (kind, target))
    index = text.count("[[faults]]")
    assert_bad_file_refused(command, path, f"faults[{index}].target",
                            [repr(target), "matches nothing", existing], tmp_path / "o", capsys)


def test_every_shipped_fault_plan_strikes_something(capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(p) for p in sorted(SCENARIOS.glob("*.toml"))]
    assert main(["validate", *files]) == 0, capsys.readouterr().err



@pytest.mark.parametrize("system", ["stream", "queue", "log", "deploy"])
def test_the_names_a_fault_may_target_are_the_actors_a_run_starts(
    system: str, tmp_path: Path
) -> None:
    """The validator's list of what a fault can strike is each system's own account of
    its topology: it must name exactly the actors the run spawns (a renamed actor
    would make its faults refused, or a listed one that never runs accepted)."""
    import io

    from runtime import configure_logging
    from runtime.scenario import load_scenario, run_scenario

    loaded = load_scenario(SCENARIOS / f"{system}_quickstart.toml")
    events = io.StringIO()
    configure_logging(json=True, level="info", stream=events)
    run_scenario(loaded, store="memory://", out=tmp_path / "out")
    started = {event["actor"] for event in map(json.loads, events.getvalue().splitlines())
               if event["event"] == "actor.started"}
    assert started == set(loaded.system.fault_targets(loaded.config)["actor"])


BOUNDS = {
    "payload-bytes": ("records = 200, keys = 20", "records = 200, payload_bytes = 10000000000",
                      "stream.source.payload_bytes", "<= 65536"),
    "partitions": ("partitions = 2", "partitions = 10000000", "stream.partitions", "<= 1024"),
    "workers": ("workers = 2", "workers = 1000000", "stream.workers", "<= 1024"),
    "records": ("records = 200", "records = 1000000000", "stream.source.records",
                "<= 100000000"),
    "chunk-bytes": ("source = { records = 200, keys = 20 }",
                    "produce_chunk = 5000\nsource = { records = 200, payload_bytes = 65536 }",
                    "stream.produce_chunk", "exceeds 268435456 bytes"),
}


@pytest.mark.parametrize("case", sorted(BOUNDS))
def test_sizes_past_their_upper_bound_are_refused(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new, field, expected = BOUNDS[case]
    assert old in STREAM
    path = _write(tmp_path, STREAM.replace(old, new))
    assert_bad_file_refused("validate", path, field, [expected], tmp_path, capsys)


@pytest.mark.parametrize(("shipped", "old", "new", "field", "expected"), [
    ("queue_quickstart.toml", "servers = 4", "servers = 100000", "queue.servers", "<= 256"),
    ("log_quickstart.toml", "sessions = 3", "sessions = 100000", "log.sessions", "<= 1000"),
    ("log_quickstart.toml", "records = 20000", "records = 0", "log.records", ">= 1"),
    ("deploy_quickstart.toml", "hosts = 6", "hosts = 100000", "deploy.hosts", "<= 1000"),
])
def test_every_system_bounds_its_sizes(
    shipped: str, old: str, new: str, field: str, expected: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = _shipped(shipped)
    assert old in text
    path = _write(tmp_path, text.replace(old, new))
    assert_bad_file_refused("validate", path, field, [expected], tmp_path, capsys)


def test_an_embedded_config_gets_the_same_bounds() -> None:
    config = StreamConfig(source="x:y", partitions=10_000_000, workers=0)
    assert ("partitions", "Expected `int` <= 1024, got 10000000") in config.problems()
    assert ("workers", "Expected `int` >= 1, got 0") in config.problems()


@pytest.mark.parametrize("name", ["../../escaped", ".hidden", "a/b", "", "x" * 101, "café"])
def test_a_scenario_name_must_be_an_identifier(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, STREAM.replace('name = "checked"', f"name = {json.dumps(name)}"))
    assert_bad_file_refused("validate", path, "scenario.name",
                            ["expected an identifier", "not starting with '.'"], tmp_path, capsys)


def test_a_name_like_a_path_does_not_escape_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, STREAM.replace('name = "checked"', 'name = "../../escaped"'))
    assert main(["run", str(path)]) == 2
    assert not (tmp_path.parent.parent / "escaped").exists()
    assert "scenario.name" in capsys.readouterr().err


def test_backoff_durations_take_units_like_every_other_duration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = STREAM + 'restart_backoff = { min = "10ms", max = "1s", jitter = 0.2 }\n' \
        'retry_backoff = { min = "5ms", max = "2s", reset_after = "1m" }\n'
    code = main(["run", str(_write(tmp_path, text)), "--out", str(tmp_path / "o"), "--json"])
    assert code == 0
    assert_all_held(json.loads(capsys.readouterr().out), ["exactly_once"])
    bare = _write(tmp_path, STREAM + "restart_backoff = { min = 0.01 }\n", "bare.toml")
    assert_bad_file_refused("validate", bare, "stream.restart_backoff.min",
                            ["expected a duration string with a unit"], tmp_path, capsys)



@pytest.mark.parametrize(("shipped", "section"), [
    ("queue_quickstart.toml", "[queue]\n"), ("deploy_quickstart.toml", "[deploy]\n")])
def test_every_system_takes_backoffs_and_windows_with_units(
    shipped: str, section: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = _shipped(shipped)
    assert section in text
    spans = 'restart_backoff = { min = "10ms", max = "1s", reset_after = "5s" }\nwithin = "20s"\n'
    path = _write(tmp_path, text.replace(section, section + spans))
    assert main(["validate", str(path)]) == 0, capsys.readouterr().err


def _plain_floats(kind: object, where: str, seen: set[type]) -> list[str]:
    """Fields typed ``float`` (not ``Duration``) reachable from a struct type."""
    import types
    import typing

    import msgspec

    origin = typing.get_origin(kind)
    if origin is typing.Annotated:
        return _plain_floats(typing.get_args(kind)[0], where, seen)
    if origin in (list, dict, tuple, typing.Union, types.UnionType):
        return [f for arg in typing.get_args(kind) for f in _plain_floats(arg, where, seen)]
    if isinstance(kind, type) and issubclass(kind, msgspec.Struct) and kind not in seen:
        seen.add(kind)
        return [f for name, hint in typing.get_type_hints(kind, include_extras=True).items()
                for f in _plain_floats(hint, f"{kind.__name__}.{name}", seen)]
    return [where] if kind is float else []


@pytest.mark.parametrize("section", ["stream", "queue", "log", "deploy"])
def test_every_span_of_time_in_a_scenario_file_is_a_duration(section: str) -> None:
    """One duration type: a field typed plain ``float`` is a rate, share, factor or
    probability, never a span of time (that would take a bare number in a file)."""
    from runtime.scenario import load_system
    from runtime.scenario._loader import FaultSpec, ScenarioHeader

    system = load_system(section)
    seen: set[type] = set()
    floats = [f for kind in (ScenarioHeader, FaultSpec, system.config_type, system.expect_type)
              for f in _plain_floats(kind, "", seen)]
    not_time = re.compile(r"(rate|share|jitter|sigma|factor|fraction|confidence|tolerance|"
                          r"increase|waves|coverage|probability)$")
    assert [f for f in floats if not not_time.search(f)] == []


LONG_DEPLOY = """
[scenario]
name = "long-deploy"
seed = 3
store = "memory://"
%s
[deploy]
hosts = 4
request_rate = 60.0
model = { versions = { a1 = {}, a2 = {}, b1 = {}, b2 = {} } }

[[deploy.configs]]
name = "config_a"
control = "a1"
experimental = "a2"

[[deploy.configs]]
name = "config_b"
control = "b1"
experimental = "b2"

[deploy.analysis]
bake = "2m"
check_interval = "30s"
min_samples = 100
waves = [0.5, 1.0]
"""


def test_a_deploy_timeout_shorter_than_the_plan_is_refused_naming_the_minimum(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 2 configs x (experiment + waves of 1, 2, 4 hosts) x 2 min bake = 960 s,
    # + 8 steps x 3 hosts x 0.5 s applying
    path = _write(tmp_path, LONG_DEPLOY % 'timeout = "10m"')
    assert_bad_file_refused("validate", path, "scenario.timeout",
                            ["600 s is shorter", "expected at least 972 s",
                             "leave timeout out"], tmp_path, capsys)


def test_a_deploy_without_a_timeout_gets_one_derived_from_its_plan_and_finishes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, LONG_DEPLOY % "")
    code = main(["run", str(path), "--out", str(tmp_path / "o"), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report["invariants"]
    assert report["outcome"] == "completed" and len(report["stages"]) == 8
    assert report["stages"][-1]["decided_at"] > 600  # past the old 10 min default


def test_a_user_deploy_model_without_truth_reports_verdicts_without_judging_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(SCENARIOS / "deploy_models.py", tmp_path / "deploy_models.py")
    text = _shipped("deploy_wave_regression.toml")
    start = text.index("[expect]")
    path = _write(tmp_path, text[:start])  # no [expect]: no truth, no verdicts pinned
    code = main(["validate", str(path)])
    assert code == 0 and "valid deploy scenario" in capsys.readouterr().out
    code = main(["run", str(path), "--out", str(tmp_path / "o"), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report["invariants"]
    names = {i["name"] for i in report["invariants"]}
    assert not names & {"bad_rejected", "good_approved"}
    assert report["metrics"]["verdict_config_a"] == "approved"  # its experiment passed
    asked = _write(tmp_path, text[:start] + "[expect]\nbad_rejected = true\n", "asked.toml")
    assert_bad_file_refused("validate", asked, "expect.truth",
                            ["has no built-in ground truth", "config_a"], tmp_path, capsys)


@pytest.mark.parametrize(("shipped", "old", "new", "field", "expected"), [
    ("stream_quickstart.toml", "[stream]", '[stream]\nretention = "soon"', "stream.retention",
     "expected a duration"),
    ("log_quickstart.toml", "[log]", "[log]\nretention = { bytes = 0 }", "log.retention.bytes",
     ">= 1"),
    ("log_quickstart.toml", "[log]", '[log]\nretention = { tme = "1h" }', "log.retention",
     "tme"),
    ("log_quickstart.toml", "[log]", '[log]\nretention = { acked = "yes" }',
     "log.retention.acked", "bool"),
])
def test_bad_retention_settings_are_refused_naming_the_field(
    shipped: str, old: str, new: str, field: str, expected: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = _shipped(shipped)
    assert old in text
    path = _write(tmp_path, text.replace(old, new, 1))
    assert_bad_file_refused("validate", path, field, [expected], tmp_path, capsys)
