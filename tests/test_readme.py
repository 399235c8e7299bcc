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


def test_cluster_example_runs_three_nodes_and_counts_each_deposit_once() -> None:
    example = next(b for b in _python_blocks() if "class Account" in b)
    assert example.count("Runtime(") == 1 and "range(3)" in example  # three nodes
    result = subprocess.run([sys.executable, "-c", example], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[5, 12, 12]"
    assert result.stdout.count("entity.activated") == 1  # one activation served all three
