"""The README is the front door: its code blocks run as written (the embedding
example, the set-up command, the scenario examples, the HTTP calls against a real
``shardline serve``) and the options it names exist."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_embedding_example_runs_and_prints_the_total() -> None:
    example = next(b for b in _python_blocks() if "class Counter" in b)
    assert len(example.strip().splitlines()) <= 40
    result = subprocess.run([sys.executable, "-c", example], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "2"


def test_readme_names_scenarios_that_exist() -> None:
    root = README.parent
    for name in set(re.findall(r"scenarios/([a-z_]+\.toml)", README.read_text())):
        assert (root / "scenarios" / name).is_file(), name


def test_embedding_example_passes_mypy_strict(tmp_path: Path) -> None:
    """``class Add(Message)`` (no ``frozen=True``) is the documented pattern: type
    checkers must see it as the frozen struct it is (issue #10: "Non-frozen dataclass
    cannot inherit from a frozen dataclass")."""
    example = next(b for b in _python_blocks() if "class Counter" in b)
    path = tmp_path / "embedding_example.py"
    path.write_text(example)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary",
         "--cache-dir", str(tmp_path / "cache"), str(path)],
        capture_output=True, text=True, timeout=300, cwd=README.parent)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_quickstart_crash_period_is_the_one_the_file_runs() -> None:
    import tomllib

    path = README.parent / "scenarios" / "stream_quickstart.toml"
    every = tomllib.loads(path.read_text())["faults"][0]["every"]  # e.g. "230ms"
    ms = every.removesuffix("ms")
    assert f"workers crash every {ms} ms" in " ".join(README.read_text().split())
    assert f"crash every {ms} ms" in path.read_text()


@pytest.mark.parametrize(("file", "said"), [
    ("stream_node_kill.toml", "node-2 SIGKILLed every {s} s"),
    ("log_node_kill.toml", "holds log `events`, every {s} s"),
])
def test_the_node_kill_periods_are_the_ones_the_files_run(file: str, said: str) -> None:
    import tomllib

    every = tomllib.loads((README.parent / "scenarios" / file).read_text())["faults"][0]["every"]
    assert said.format(s=every.removesuffix("s")) in " ".join(README.read_text().split())


def test_shell_examples_name_a_shardline_that_the_set_up_installs() -> None:
    """The set-up puts ``shardline`` in ``.venv/bin`` only, not on PATH."""
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), re.S):
        for line in block.splitlines():
            assert not re.match(r"\s*shardline\b", line), line


def test_every_http_route_is_documented() -> None:
    from starlette.routing import Route

    from actors.logdelivery._http import create_app

    class _Service:  # create_app only stores it
        pass

    app = create_app(_Service())  # type: ignore[arg-type]
    text = README.read_text()
    for route in app.routes:
        assert isinstance(route, Route)
        for method in sorted((route.methods or set()) - {"HEAD"}):
            assert f"`{method} {route.path}" in text, f"{method} {route.path}"


def _blocks(lang: str) -> list[str]:
    """The code blocks fenced as ``lang`` (``""``: fenced without one), in order."""
    fences = re.findall(r"^```(\w*)\n(.*?)^```$", README.read_text(), re.M | re.S)
    return [text for fenced, text in fences if fenced == lang]


def _route_answers() -> dict[str, set[str]]:
    """The route table: ``"POST /logs/{log}/records"`` -> the keys of its answer."""
    answers = {}
    for line in README.read_text().splitlines():
        cells = re.split(r"(?<!\\)\|", line)
        if len(cells) == 5 and cells[1].strip().startswith("`") and "{" in cells[3]:
            route = cells[1].strip().strip("`")
            top = re.sub(r'\[[^]]*\]|"[^"]*"', "", cells[3].split("{", 1)[1])
            answers[route] = set(re.findall(r"(\w+)\s*[:,}]", top))
    return answers


def _shardline_lines() -> list[list[str]]:
    """Every ``.venv/bin/shardline ...`` command of the README's shell blocks, as argv
    (without the program, a trailing ``&`` or a ``cmd && cmd`` prefix)."""
    found = []
    for block in _blocks("bash"):
        for line in block.splitlines():
            for part in line.split("&&"):
                words = shlex.split(part)
                if words and words[0] == ".venv/bin/shardline":
                    found.append([w for w in words[1:] if w != "&"])
    return found


def test_the_set_up_command_runs_the_quickstart(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from runtime.cli import main
    from tests.scenario_helpers import quiet_logs

    quiet_logs()
    monkeypatch.chdir(README.parent)
    argv = next(a for a in _shardline_lines() if a[0] == "run")
    assert main([*argv, "--out", str(tmp_path / "out"), "--json"]) == 0


def test_the_command_line_synopsis_names_only_options_that_exist(
    capsys: pytest.CaptureFixture[str]
) -> None:
    from runtime.bench._cli import _parser as bench_parser
    from runtime.cli import main

    synopsis = next(b for b in _blocks("") if b.startswith("shardline run"))
    commands = re.split(r"\n(?=shardline )", synopsis)
    assert len(commands) >= 6
    for command in commands:
        words = command.split()
        if words[1:3] == ["bench", "faults"]:
            usage = bench_parser().format_help()
        elif words[1].startswith("--"):
            usage = "--version"  # a top-level flag, checked below
        else:
            with pytest.raises(SystemExit):
                main([words[1], "--help"])
            usage = capsys.readouterr().out
        for option in re.findall(r"--[a-z][a-z-]*", command):
            assert option in usage, f"{option} in {command!r}"
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0


def test_the_bench_examples_name_only_options_that_exist() -> None:
    from runtime.bench._cli import _parser as bench_parser

    sweeps = [a for a in _shardline_lines() if a[:2] == ["bench", "faults"]]
    assert len(sweeps) == 3
    for argv in sweeps:
        bench_parser().parse_args(argv[2:])  # exits 2 on an unknown option


_NODES_SCENARIO = """[scenario]
name = "readme-node-faults"
nodes = 3

[deploy]
hosts = 6

[deploy.model]
versions = { a1 = {}, a2 = {} }

[[deploy.configs]]
name = "config_a"
control = "a1"
experimental = "a2"

"""


def test_the_scenario_examples_validate(tmp_path: Path) -> None:
    """The ``[stream]`` example is a whole scenario file, the ``[queue]`` one too (the
    user functions they name are commented out: ``pkg.mod`` is a placeholder)."""
    from runtime.cli import main

    toml = _blocks("toml")
    blocks = [b for b in toml if b.startswith("[scenario]")]
    assert len(blocks) == 2
    for fragment in (b for b in toml if not b.startswith("[scenario]")):
        # a [[faults]] fragment: validated inside a scenario that runs across 3 nodes
        assert fragment.startswith("[[faults]]"), fragment
        blocks.append(_NODES_SCENARIO + fragment)
    files = []
    for i, block in enumerate(blocks):
        files.append(tmp_path / f"example{i}.toml")
        files[-1].write_text(block)
    assert main(["validate", *map(str, files)]) == 0


def test_the_http_examples_run_against_a_real_serve(tmp_path: Path) -> None:
    """The ``shardline serve`` line and every ``curl`` below it, as written (the port
    and the store file moved to the test's own, ``SESSION`` from the session answer);
    each answer has the keys the route table promises."""
    import httpx

    from tests.test_log_http import Server

    block = next(b for b in _blocks("bash") if "shardline serve" in b)
    serve = next(a for a in _shardline_lines() if a[0] == "serve")
    args = [{"8470": "0", "sqlite:///logs.db": f"sqlite:///{tmp_path}/logs.db"}.get(a, a)
            for a in serve[1:]]
    promised = _route_answers()
    server = Server(args[1], *args[2:])
    try:
        session = ""
        for line in block.splitlines()[1:]:
            words = shlex.split(line.split("  #")[0])
            assert words[0] == "curl", line
            options = dict(zip(words[1:-1:2], words[2:-1:2], strict=True))
            assert set(options) <= {"-H", "-d"}, line
            headers = dict([options["-H"].split(": ", 1)])
            body = options.get("-d")
            url = words[-1].replace("localhost:8470", server.url).replace("SESSION", session)
            response = httpx.request("POST" if body else "GET", url, headers=headers,
                                     content=body, timeout=30)
            assert response.is_success, (line, response.text)
            answer = response.json()
            session = answer.get("session", session)
            path = re.sub(r"/logs/events", "/logs/{log}", url.split(server.url)[1].split("?")[0])
            route = ("POST " if body else "GET ") + (
                path.replace(session, "{session}") if session else path)
            assert set(answer) == promised[route], (route, answer)
        assert answer["acked"] == 1 and answer["superseded"] == []
    finally:
        assert server.stop() == 0


def test_the_sweep_section_names_every_fault_kind_a_sweep_knows() -> None:
    from runtime.bench._kinds import KINDS

    section = README.read_text().split("## Failure-injection sweeps")[1]
    for kind in KINDS:
        assert f"`{kind}`" in section, kind


def test_cluster_example_runs_three_nodes_and_counts_each_deposit_once() -> None:
    example = next(b for b in _python_blocks() if "class Account" in b)
    assert example.count("Runtime(") == 1 and "range(3)" in example  # three nodes
    events = "import runtime\nruntime.configure_logging(json=True)\n"  # info events to stderr
    result = subprocess.run([sys.executable, "-c", events + example], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[5, 12, 12]"
    assert result.stderr.count("entity.activated") == 1  # one activation served all three
