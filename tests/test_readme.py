"""The README is the front door: its embedding example must really run."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

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
def test_cluster_example_runs_three_nodes_and_counts_each_deposit_once() -> None:
    example = next(b for b in _python_blocks() if "class Account" in b)
    assert example.count("Runtime(") == 1 and "range(3)" in example  # three nodes
    events = "import runtime\nruntime.configure_logging(json=True)\n"  # info events to stderr
    result = subprocess.run([sys.executable, "-c", events + example], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[5, 12, 12]"
    assert result.stderr.count("entity.activated") == 1  # one activation served all three
