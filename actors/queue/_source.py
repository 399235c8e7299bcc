"""Sources of originals: a deterministic built-in generator, or a user function ``fn(seed)``.

A source yields ``(order_key, body)`` pairs, the same ones in the same order
for the same seed, so a restarted producer resumes at its durable cursor
and the check can recompute the ledger and the oracle from the source.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

from actors.queue._config import GeneratedSource
from runtime._callables import resolve_callable

SourceItems = Callable[[int], Iterator[tuple[str, bytes]]]
HOT_KEY = "key-000000"


def generated_items(spec: GeneratedSource, seed: int) -> Iterator[tuple[str, bytes]]:
    """The items of ``spec`` for ``seed``: the same as drawing each key and value with
    ``rng.randrange`` (its rejection sampling written out, so the same random bits give
    the same items; this runs once per original, in the producer and in the checks)."""
    rng = random.Random(f"queue-source:{seed}")
    keys = spec.keys
    names = [f"key-{i:06d}" for i in range(keys)]
    values = [b"%d" % v for v in range(spec.max_value)] if spec.max_value <= 1 << 16 else None
    hot = spec.hot_share
    bits = rng.getrandbits
    draw = rng.random
    key_bits = keys.bit_length()
    top = spec.max_value
    value_bits = top.bit_length()
    for _ in range(spec.records):
        if hot and draw() < hot:
            key = HOT_KEY
        else:
            r = bits(key_bits)
            while r >= keys:
                r = bits(key_bits)
            key = names[r]
        v = bits(value_bits)
        while v >= top:
            v = bits(value_bits)
        yield key, values[v] if values is not None else b"%d" % v


def source_items(spec: GeneratedSource | str) -> SourceItems:
    """A function seed -> originals, for either kind of source."""
    if isinstance(spec, GeneratedSource):
        return lambda seed: generated_items(spec, seed)
    fn = resolve_callable(spec, what="queue source")

    def user_items(seed: int) -> Iterator[tuple[str, bytes]]:
        for item in fn(seed):  # type: ignore[attr-defined]
            if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)
                    and isinstance(item[1], bytes)):
                raise TypeError(
                    f"queue source {spec!r} must yield (order_key: str, body: bytes) pairs, "
                    f"got {item!r}")
            yield item

    return user_items
