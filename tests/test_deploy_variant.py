"""Variant assignment: a stable hash of (experiment, request id), not Python's ``hash()``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from actors.deploy import bucket, variant_for


def test_share_follows_the_fraction() -> None:
    ids = [f"req-{i}" for i in range(20000)]
    share = sum(variant_for(i, "exp-1", 0.1) == "experiment" for i in ids) / len(ids)
    assert 0.09 < share < 0.11


def test_edges_and_monotonic_growth() -> None:
    ids = [f"r{i}" for i in range(2000)]
    assert all(variant_for(i, "e", 0.0) == "control" for i in ids)
    assert all(variant_for(i, "e", 1.0) == "experiment" for i in ids)
    small = {i for i in ids if variant_for(i, "e", 0.05) == "experiment"}
    large = {i for i in ids if variant_for(i, "e", 0.25) == "experiment"}
    assert small < large  # raising the fraction only moves requests into the experiment


def test_experiments_split_independently() -> None:
    ids = [f"r{i}" for i in range(5000)]
    a = {i for i in ids if variant_for(i, "exp-a", 0.5) == "experiment"}
    b = {i for i in ids if variant_for(i, "exp-b", 0.5) == "experiment"}
    assert 0.2 < len(a & b) / len(ids) < 0.3


def test_same_in_another_process_with_another_hash_seed() -> None:
    """A retry served by another process lands in the same variant."""
    ids = [f"retry-{i}" for i in range(50)]
    here = [bucket(i, "exp") for i in ids]
    code = ("import json; from actors.deploy import bucket; "
            f"print(json.dumps([bucket(i, 'exp') for i in {ids!r}]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONHASHSEED": "12345"})
    assert json.loads(out.stdout) == here
