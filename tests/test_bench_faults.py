"""``shardline bench faults`` end to end: a tiny simulated sweep writes every file,
its figures are valid images, a replay command reproduces its run, and a sweep
over a destination that drops a batch reports the failure first and exits 1."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import matplotlib.image
import pytest
from PIL import Image

import actors.stream._system as stream_system
from actors.stream._destinations import open_destination
from runtime import cli
from runtime.bench import main

TINY = Path(__file__).parent / "bench_helpers" / "tiny_stream.toml"
FIGURES = ("throughput", "latency", "recovery", "goodput", "p99")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _sweep(out: Path, faults: str = "crash,pause") -> int:
    return main(["--scenario", str(TINY), "--faults", faults, "--rates", "5",
                 "--seeds", "1", "--clock", "simulated", "--out", str(out)])


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path]:
    out = tmp_path_factory.mktemp("sweep")
    return _sweep(out), out


def test_a_tiny_sweep_writes_runs_samples_figures_and_reports(sweep: tuple[int, Path]) -> None:
    code, out = sweep
    assert code == 0
    runs = _lines(out / "runs.jsonl")
    assert [(r["fault"], r["rate"]) for r in runs] == [("none", 0.0), ("crash", 5.0),
                                                       ("pause", 5.0)]
    for run in runs:
        assert run["system"] == "stream" and run["seed"] == 1 and run["correct"]
        assert {i["name"] for i in run["invariants"]} >= {"exactly_once", "order"}
        assert run["completed"] == 2000 and run["goodput"] > 0
        assert run["unit"] == "records committed"
        assert run["replay"].startswith("PYTHONPATH=") and " shardline run " in run["replay"]
        assert len(run["trace_digest"]) == 32
    for run in runs[1:]:
        assert run["faults_fired"] >= 1 and run["fault_events"]
        assert run["metastability"]["verdict"] in {"recovered", "slow", "not recovered",
                                                   "inconclusive"}
    samples = _lines(out / "samples.jsonl")
    assert {s["run"] for s in samples} == {r["run"] for r in runs}
    keys = {"run", "system", "fault", "rate", "seed", "t", "throughput", "p50", "p99", "max",
            "in_flight", "faults"}
    assert all(keys <= s.keys() for s in samples)
    assert sum(s["faults"] for s in samples if s["fault"] == "crash") == runs[1]["faults_fired"]
    report = (out / "report.md").read_text()
    assert "None: every run held every invariant (3 runs)." in report
    assert "## Metastability" in report and "## Summary" in report
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(FIGURES)


@pytest.mark.parametrize("figure", FIGURES)
def test_every_figure_is_a_valid_png_and_svg(sweep: tuple[int, Path], figure: str) -> None:
    _, out = sweep
    png = out / "plots" / f"stream-{figure}.png"
    assert png.read_bytes()[:8] == PNG_MAGIC
    with Image.open(png) as image:
        image.verify()
    pixels = matplotlib.image.imread(png)
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert pixels.std() > 0  # something was drawn
    svg = ElementTree.parse(out / "plots" / f"stream-{figure}.svg").getroot()
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"


def test_a_runs_replay_command_reproduces_its_trace_digest(
        sweep: tuple[int, Path], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    _, out = sweep
    run = _lines(out / "runs.jsonl")[1]
    words = shlex.split(run["replay"])
    assert words[0].startswith("PYTHONPATH=") and words[1:3] == ["shardline", "run"]
    monkeypatch.setattr(sys, "path", [words[0].removeprefix("PYTHONPATH="), *sys.path])
    capsys.readouterr()
    assert cli.main([*words[2:], "--json"]) == 0
    replayed = json.loads(capsys.readouterr().out)
    assert replayed["trace_digest"] == run["trace_digest"]


def test_redraw_rebuilds_figures_and_report_from_the_sweep_files(
        sweep: tuple[int, Path], tmp_path: Path) -> None:
    import shutil

    _, out = sweep
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    shutil.rmtree(copy / "plots")
    (copy / "report.md").unlink()
    assert main(["--redraw", "--out", str(copy)]) == 0
    assert sorted(p.name for p in (copy / "plots").iterdir()) == sorted(
        f"stream-{f}.{ext}" for f in FIGURES for ext in ("png", "svg"))
    assert "Redrawn by `shardline bench faults --redraw" in (copy / "report.md").read_text()


def test_redraw_of_a_missing_sweep_exits_2(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--redraw", "--out", str(tmp_path / "nothing")]) == 2
    assert "--redraw: cannot read the sweep in" in capsys.readouterr().err


class _DropsSecondBatch:
    """A destination that acknowledges its second batch without writing it."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._calls = 0

    async def deliver(self, batch: Any) -> None:
        self._calls += 1
        if self._calls != 2:
            await self._inner.deliver(batch)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_a_sweep_over_a_destination_that_drops_a_batch_lists_the_failure_and_exits_1(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(stream_system, "open_destination",
                        lambda url, *, threaded: _DropsSecondBatch(
                            open_destination(url, threaded=threaded)))
    assert _sweep(tmp_path, faults="crash") == 1
    runs = _lines(tmp_path / "runs.jsonl")
    assert runs and not any(r["correct"] for r in runs)
    report = (tmp_path / "report.md").read_text()
    failures = report.index("## Correctness failures")
    assert failures < report.index("## Metastability") < report.index("## Summary")
    assert "2 of 2 runs broke an invariant" in report
    assert "`exactly_once`: " in report and "missing at destination" in report
    for run in runs:
        assert f"replay: `{run['replay']}`" in report
    assert "all failed" in report  # never averaged into a curve
    err = capsys.readouterr().err
    assert "CORRECTNESS FAILURE stream-none-0-s1: replay with: " in err
    assert main(["--redraw", "--out", str(tmp_path)]) == 1


@pytest.mark.parametrize(("args", "message"), [
    (["--rates", "1,x"], "--rates: expected numbers such as 0,0.5,2, got '1,x'"),
    (["--faults", "kill_node"], "--faults: kind 'kill_node' is not available for system "
                                "'stream' (a node fault: it needs a scenario that runs across nodes"),
    (["--faults", "nonsense"], "--faults: kind 'nonsense' is not available"),
    (["--bucket", "5"], "--bucket: expected a duration such as"),
    (["--seeds", "0"], "--seeds: expected at least 1, got 0"),
])
def test_bad_options_exit_2_naming_the_option(tmp_path: Path, args: list[str], message: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--scenario", str(TINY), "--clock", "simulated", "--out", str(tmp_path),
                 *args])
    assert code == 2
    assert message in capsys.readouterr().err


def test_a_bad_scenario_file_exits_2_naming_the_file(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[scenario]\nname = "x"\n[stream]\npartitions = "many"\n')
    assert main(["--scenario", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: stream.partitions: Expected `int`" in err
    assert "Traceback" not in err


def test_shardline_bench_faults_runs_through_the_cli_script(tmp_path: Path) -> None:
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "runtime.cli", "bench", "faults", "--scenario", str(TINY),
         "--rates", "1,x", "--out", str(tmp_path)],
        capture_output=True, text=True, cwd=Path(__file__).parents[1], check=False)
    assert done.returncode == 2, done.stderr
    assert "--rates: expected numbers" in done.stderr



@pytest.mark.parametrize("missing", ["tomli_w", "matplotlib", "markdown_it"])
def test_without_the_bench_extra_it_exits_2_before_running_anything(
        tmp_path: Path, missing: str) -> None:
    """A base install (``pip install -e .``) lacks the ``[bench]`` extra: the sweep says
    so up front (it printed a traceback, after running every point for matplotlib)."""
    import subprocess

    hide = f"import sys; sys.modules[{missing!r}] = None; "
    argv = ["--scenario", str(TINY), "--rates", "1", "--seeds", "1", "--clock", "simulated",
            "--out", str(tmp_path / "out")]
    done = subprocess.run(
        [sys.executable, "-c", hide + "from runtime.bench import main; "
         f"raise SystemExit(main({argv!r}))"],
        capture_output=True, text=True, cwd=Path(__file__).parents[1], check=False)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert f"needs {missing}" in done.stderr and "pip install -e '.[bench]'" in done.stderr
    assert not (tmp_path / "out").exists()


def test_node_faults_sweep_a_scenario_that_runs_across_nodes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """kill_node on the deploy scenario across three (simulated) nodes: the kills fire
    and every run keeps its invariants; the no-fault point kills nothing."""
    scenario = Path(__file__).parents[1] / "scenarios" / "deploy_node_kill.toml"
    code = main(["--scenario", str(scenario), "--faults", "kill_node", "--rates", "0,0.02",
                 "--seeds", "1", "--clock", "simulated", "--out", str(tmp_path)])
    capsys.readouterr()
    assert code == 0
    runs = {r["fault"]: r for r in map(json.loads, (tmp_path / "runs.jsonl").open())}
    assert runs.keys() == {"none", "kill_node"}
    assert all(r["correct"] for r in runs.values())
    kills = {name: {i["name"]: i for i in r["invariants"]}["exercised_node_kills"]
             for name, r in runs.items()}
    assert kills["kill_node"]["held"] and not kills["none"]["held"]
