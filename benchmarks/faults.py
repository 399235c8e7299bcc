"""Failure-injection sweeps with plots: ``shardline bench faults --help``.

    shardline bench faults --system stream --faults crash,pause,store_error \
        --rates 0,0.2,1,5 --seeds 3 --out bench/stream
    shardline bench faults --all --quick --out bench/quick
    shardline bench faults --scenario my.toml --rates 0,1,2 --out bench/mine

The work is done by ``runtime.bench``; this script only names the built-in
scenario of each system (``scenarios/bench_<system>.toml``).
"""

from __future__ import annotations

import sys
from pathlib import Path

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
sys.path.insert(0, str(SCENARIOS.parent))

from runtime.bench import main  # noqa: E402

if __name__ == "__main__":
    builtin = {p.stem.removeprefix("bench_"): p for p in SCENARIOS.glob("bench_*.toml")}
    raise SystemExit(main(sys.argv[1:], builtin))
