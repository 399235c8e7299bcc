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
