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
    rng = random.Random(f"queue-source:{seed}")
    names = [f"key-{i:06d}" for i in range(spec.keys)]
    hot = spec.hot_share
    for _ in range(spec.records):
        key = HOT_KEY if hot and rng.random() < hot else names[rng.randrange(spec.keys)]
        yield key, b"%d" % rng.randrange(spec.max_value)


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
