"""The one quantile rule of the round-trip benchmarks, so figures side by side compare."""

from __future__ import annotations

WARM_UP = 200
"""Round trips made and not timed before the timed ones, in every system measured."""


def p50_p99(samples: list[float]) -> tuple[float, float]:
    """p50 and p99 of round-trip times: the values at ranks ``n // 2`` and ``int(0.99 n)``
    of the sorted samples (``samples`` must not be empty)."""
    ordered = sorted(samples)
    n = len(ordered)
    return ordered[n // 2], ordered[min(n - 1, int(n * 0.99))]
