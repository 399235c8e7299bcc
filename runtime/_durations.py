"""One duration type everywhere: seconds in code, strings with units in files.

Every field that holds a span of time — in scenario tables and in the
runtime's own config structs (``Backoff``, ``SupervisorSpec``) — is typed
:class:`Duration`. Python code passes plain seconds (``Backoff(min=0.01)``:
to type checkers ``Duration`` *is* ``float``); a decoded file gives strings
with units (``restart_backoff = { min = "10ms", max = "1s" }``), which
:func:`decode_hook` turns into seconds. A bare number in a file is refused on
purpose: ``lease_ttl = 2`` could mean seconds or milliseconds, and a scenario
that guesses wrong passes for the wrong reason.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PATTERN = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(us|ms|s|m|h)\s*")


if TYPE_CHECKING:
    Duration = float
else:

    class Duration(float):
        """Seconds, decoded from a string with a unit (a marker type for msgspec)."""


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


def encode_seconds(value: Any) -> Any:
    """msgspec ``enc_hook`` for what a program stores (not a file): a Duration as its
    seconds. Read it back with :func:`decode_seconds`."""
    if isinstance(value, float):
        return float(value)
    raise NotImplementedError(f"cannot encode {type(value).__name__}")


def decode_seconds(kind: type, value: Any) -> Any:
    """msgspec ``dec_hook`` for what :func:`encode_seconds` stored: seconds as a number."""
    if kind is Duration and isinstance(value, int | float):
        return Duration(value)
    raise NotImplementedError(f"cannot decode {kind!r} from {value!r}")
