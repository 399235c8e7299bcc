"""The one percentile rule every report, sample and benchmark figure uses.

Nearest rank (the standard definition): the ``q`` percentile of ``n`` values
is the value at rank ``ceil(q * n)`` (1-based) of the sorted values, the
smallest value with at least a fraction ``q`` of the values at or below it.
It is always one of the measured values, never an interpolation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


def percentile(values: Iterable[float], q: float) -> float:
    """Nearest-rank percentile ``q`` (0 to 1) of ``values`` in any order; 0.0 for no values.

    Reports print 0.0 where nothing was measured; a caller that must tell "none"
    from a measured 0 checks for values first (the sampler reports None).
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"percentile must be between 0 and 1, got {q}")
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]
