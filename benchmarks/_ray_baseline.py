"""Ray's 1:1 actor calls between processes: the baseline ``cluster.py`` runs beside its own.

Run as its own process (``python benchmarks/_ray_baseline.py MESSAGES ASKS``) so that
importing Ray never shares an interpreter with the Shardline figures. It starts a
local Ray instance (``ray.init`` on this machine only, no dashboard), one actor in a
worker process, and measures what ``cluster.py`` measures for Shardline:

- calls/s: one caller sends MESSAGES ``bump.remote(1)`` without waiting (Ray's
  fire-and-forget), then waits for the last; the time covers every call handled;
- round trips: ASKS sequential ``ray.get(actor.value.remote())`` after the same
  untimed warm-up, each timed alone, p50/p99 by the same rule (``_quantiles``).

Prints one JSON line. Exits 3 when Ray is not installed (``pip install ray``).
"""

from __future__ import annotations

import json
import sys
import time

from _quantiles import WARM_UP, p50_p99


def main(messages: int, asks: int) -> int:
    try:
        import ray
    except ImportError:
        return 3

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level="ERROR")

    @ray.remote
    class Counter:
        def __init__(self) -> None:
            self.n = 0

        def bump(self, k: int) -> int:
            self.n += k
            return self.n

        def value(self) -> int:
            return self.n

    counter = Counter.remote()  # type: ignore[attr-defined]
    ray.get(counter.value.remote())  # started
    started = time.perf_counter()
    last = None
    for _ in range(messages):
        last = counter.bump.remote(1)
    assert ray.get(last) == messages
    calls_per_s = messages / (time.perf_counter() - started)
    for _ in range(WARM_UP):
        ray.get(counter.value.remote())
    rtts = []
    for _ in range(asks):
        began = time.perf_counter_ns()
        ray.get(counter.value.remote())
        rtts.append((time.perf_counter_ns() - began) / 1000)
    ray.shutdown()
    p50, p99 = p50_p99(rtts)
    print(json.dumps({"ray": ray.__version__, "calls_per_s": calls_per_s,
                      "ask_p50_us": p50, "ask_p99_us": p99}))
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), int(sys.argv[2])))
