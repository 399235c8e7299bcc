"""Durations in scenario files are strings with units: ``"250ms"``, ``"2s"``, ``"5m"``, ``"1h"``.

A bare number is refused on purpose: ``lease_ttl = 2`` could mean seconds or
milliseconds, and a scenario that guesses wrong passes for the wrong reason.
"""

from __future__ import annotations

import re
from typing import Any

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PATTERN = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(us|ms|s|m|h)\s*")


class Duration(float):
    """Seconds, decoded from a string with a unit."""


def parse_duration(text: str) -> Duration:
    """``"250ms"`` -> 0.25. ``ValueError`` names the text and the accepted form."""
    match = _PATTERN.fullmatch(text)
    if match is None:
        raise ValueError(
            f"expected a duration such as '250ms', '2s', '5m' or '1h', got {text!r}"
        )
    return Duration(float(match[1]) * _UNITS[match[2]])


def decode_hook(kind: type, value: Any) -> Any:
    """msgspec ``dec_hook`` that turns duration strings into :class:`Duration`."""
    if kind is Duration:
        if isinstance(value, str):
            return parse_duration(value)
        raise ValueError(
            f"expected a duration string with a unit such as '2s', got {value!r}"
        )
    raise NotImplementedError(f"cannot decode {kind!r}")
