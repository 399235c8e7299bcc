"""The one quantile rule of the round-trip benchmarks, so figures side by side compare."""

from __future__ import annotations

from runtime.scenario import percentile

WARM_UP = 200
"""Round trips made and not timed before the timed ones, in every system measured."""


def p50_p99(samples: list[float]) -> tuple[float, float]:
    """p50 and p99 of round-trip times by the runtime's nearest-rank rule
    (``runtime.scenario.percentile``; ``samples`` must not be empty)."""
    if not samples:
        raise ValueError("no round trips to take quantiles of")
    return percentile(samples, 0.50), percentile(samples, 0.99)
