"""Service models for deploy scenarios: ``fn(configs, request, rng) -> (latency_s, ok)``.

``leaky`` is what the built-in model cannot express: a version that looks
fine during its experiment and degrades later (a leak that starts after
``LEAK_START`` seconds of runtime), so only a promotion wave can catch it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Protocol

LEAK_START = 130.0
LEAK_PER_SECOND = 0.01


class _Request(Protocol):
    id: str
    host: str
    time: float


def leaky(configs: Mapping[str, str], request: _Request,
          rng: random.Random) -> tuple[float, bool]:
    """40 ms median; ``config_a = a2`` slows by 1 % per second after ``LEAK_START``."""
    factor = 1.0
    if configs.get("config_a") == "a2":
        factor += LEAK_PER_SECOND * max(0.0, request.time - LEAK_START)
    latency = 0.04 * factor * math.exp(0.4 * rng.gauss(0.0, 1.0))
    return latency, rng.random() >= 0.005
