"""What runtime sampling costs: the stream bench scenario, saturating, with and without samples.

    python benchmarks/sampling_cost.py [--pairs 5] [--records 400000] [--bucket 100ms]

Runs ``scenarios/bench_stream.toml`` without its producer rate limit (so
throughput is what the machine sustains), alternating A (``samples`` on) and
B (off) ``--pairs`` times (A first in even pairs, B first in odd ones) on the real clock, each run on a fresh SQLite store.
Two figures, because the machine is shared and noisy:

- the throughput ratio A/B per pair and its median (noise of a few % is
  expected between any two runs here);
- the direct one: the wall time spent inside the sampler's bucket reads
  (timed around each one) as a share of A's run time. This is the cost the
  sampler adds to the event loop, free of run-to-run noise.

Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runtime import configure_logging  # noqa: E402
from runtime.scenario import (  # noqa: E402
    Report,
    Sampler,
    parse_duration,
    parse_scenario,
    run_scenario,
)

_spent = [0.0]
_original_take = Sampler._take


def _timed_take(self: Sampler) -> None:
    started = time.perf_counter()
    _original_take(self)
    _spent[0] += time.perf_counter() - started


Sampler._take = _timed_take  # type: ignore[method-assign]


def _run(records: int, bucket: str | None) -> tuple[float, float, Report]:
    raw = tomllib.loads((ROOT / "scenarios" / "bench_stream.toml").read_text())
    raw["stream"].pop("rate", None)
    raw["stream"]["source"]["records"] = records
    raw["scenario"].pop("samples", None)
    if bucket is not None:
        raw["scenario"]["samples"] = bucket
    loaded = parse_scenario(raw, "bench_stream.toml")
    _spent[0] = 0.0
    with tempfile.TemporaryDirectory() as out:
        report = run_scenario(loaded, out=out)
    assert report.passed, report.invariants
    rate = float(report.metrics["throughput_records_per_s"])
    elapsed = float(report.metrics["elapsed_s"])
    return rate, _spent[0] / elapsed, report


def main() -> None:
    configure_logging(level="warning", stream=io.StringIO())
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--records", type=int, default=400_000)
    parser.add_argument("--bucket", default="100ms")
    args = parser.parse_args()
    parse_duration(args.bucket)
    rows = []
    for pair in range(args.pairs):
        if pair % 2 == 0:  # ABBA: neither side always runs first
            with_rate, share, _ = _run(args.records, args.bucket)
            without_rate, _, _ = _run(args.records, None)
        else:
            without_rate, _, _ = _run(args.records, None)
            with_rate, share, _ = _run(args.records, args.bucket)
        rows.append((with_rate, without_rate, share))
        print(f"pair {pair + 1}: sampled {with_rate:,.0f}/s  unsampled {without_rate:,.0f}/s  "
              f"ratio {with_rate / without_rate:.3f}  sampler share {share:.4%}", flush=True)
    ratios = [a / b for a, b, _ in rows]
    shares = [s for _, _, s in rows]
    print()
    print(f"{'':22}{'records/s (every run)':>60}")
    print(f"{'sampled (' + args.bucket + ')':22}" + "  ".join(f"{a:,.0f}" for a, _, _ in rows))
    print(f"{'unsampled':22}" + "  ".join(f"{b:,.0f}" for _, b, _ in rows))
    print(f"median ratio sampled/unsampled {statistics.median(ratios):.3f} "
          f"(runs {', '.join(f'{r:.3f}' for r in ratios)})")
    print(f"sampler time share of the run: median {statistics.median(shares):.4%}, "
          f"max {max(shares):.4%}")
    print(json.dumps({"benchmark": "sampling_cost", "bucket": args.bucket,
                      "records": args.records, "sampled": [a for a, _, _ in rows],
                      "unsampled": [b for _, b, _ in rows], "ratios": ratios,
                      "sampler_share": shares}))


if __name__ == "__main__":
    main()
