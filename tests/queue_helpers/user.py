"""User code a queue scenario names as ``tests.queue_helpers.user:NAME``: a source,
tier functions and a final step, as a user's package would provide them.

The bodies are JSON so the functions are easy to check: an original is
``{"n": index, "v": value}``; tiers carry ``{"count", "sum", "first", "last"}``
of the originals they stand for, with ``last`` the highest index seen.
``CALLS`` records each ``always_fails`` call (reset with ``reset()``).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator

ORIGINALS = 300
CALLS: list[tuple[str, bytes]] = []


def reset() -> None:
    CALLS.clear()


def originals(seed: int) -> Iterator[tuple[str, bytes]]:
    """A user source ``fn(seed)``: the same (order key, body) pairs for the same seed."""
    rng = random.Random(f"queue-user-source:{seed}")
    for index in range(ORIGINALS):
        key = f"acct-{rng.randrange(25):02d}"
        yield key, json.dumps({"n": index, "v": rng.randrange(100)}).encode()


def expected_total(seed: int) -> dict[str, int]:
    """What ``finish`` must return for ``originals(seed)`` through the functions below."""
    values = [json.loads(body)["v"] for _, body in originals(seed)]
    return {"count": len(values), "sum": sum(values)}


def transform(key: str, body: bytes) -> tuple[str, bytes]:
    """Map: one original -> its summary, under a coarser key (the account's group)."""
    item = json.loads(body)
    summary = {"count": 1, "sum": item["v"], "first": item["n"], "last": item["n"]}
    return f"group-{int(key[-2:]) % 5}", json.dumps(summary).encode()


def _merge(bodies: list[bytes]) -> dict[str, int]:
    parts = [json.loads(b) for b in bodies]
    return {"count": sum(p["count"] for p in parts), "sum": sum(p["sum"] for p in parts),
            "first": min(p["first"] for p in parts), "last": max(p["last"] for p in parts)}


def summarize(key: str, bodies: list[bytes]) -> tuple[str, bytes]:
    """Reduce: a window of one group's summaries -> one summary (same key)."""
    return key, json.dumps(_merge(bodies)).encode()


def aggregate(key: str, bodies: list[bytes]) -> tuple[str, bytes]:
    """Reduce: summaries of any group -> one summary under a single key."""
    return "all", json.dumps(_merge(bodies)).encode()


def finish(bodies: list[bytes]) -> dict[str, int]:
    """Final: the count and sum over every aggregate."""
    merged = _merge(bodies) if bodies else {"count": 0, "sum": 0}
    return {"count": merged["count"], "sum": merged["sum"]}


def always_fails(key: str, body: bytes) -> tuple[str, bytes]:
    """A map function that raises on every message: every message is poison."""
    CALLS.append((key, body))
    raise ValueError(f"cannot transform {body!r}")


def fails_on_seven(key: str, body: bytes) -> tuple[str, bytes]:
    """A map that raises for originals whose value ends in 7, and transforms the rest."""
    if json.loads(body)["v"] % 10 == 7:
        raise ValueError("values ending in 7 are refused")
    return transform(key, body)


def wrong_shape(key: str, body: bytes) -> object:
    """A map that returns a bare body instead of (order_key, body)."""
    return body


not_a_function = 42
