"""Which variant a request belongs to: a stable hash, never Python's ``hash()``.

``hash(str)`` is salted per process (PYTHONHASHSEED), so a retry served by
another process, or the same scenario run again, could land in the other
variant. BLAKE2b of ``experiment_id`` and ``request_id`` is the same
everywhere, so a request id is always in the same variant of a given
experiment, and different experiments split the traffic independently.
"""

from __future__ import annotations

from hashlib import blake2b

_SCALE = float(1 << 64)


def bucket(request_id: str, experiment_id: str) -> float:
    """A uniform number in [0, 1) fixed by the request id and the experiment id."""
    digest = blake2b(f"{experiment_id}\x00{request_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def variant_for(request_id: str, experiment_id: str, fraction: float) -> str:
    """``"experiment"`` for a ``fraction`` of request ids, ``"control"`` for the rest.

    ``fraction >= 1`` sends every request to the experiment (a promoted host),
    ``fraction <= 0`` none. Increasing the fraction only moves requests from
    control to experiment, never back.
    """
    if fraction <= 0.0:
        return "control"
    if fraction >= 1.0:
        return "experiment"
    return "experiment" if bucket(request_id, experiment_id) < fraction else "control"
