"""Sources: a deterministic built-in generator, or a user function ``fn(seed)``.

A source is an iterable of ``(key, payload)`` that yields the same items in
the same order for the same seed, so a restarted producer can skip what the
partitions already hold and neither repeat nor lose an item.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import msgspec

from runtime._callables import resolve_callable


class GeneratedSource(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Built-in source: ``records`` items over ``keys`` keys with ``payload_bytes`` payloads.

    Each payload starts with the item's index, so every item is distinct and
    an exactly-once check can tell a duplicate from a legitimate repeat.
    """

    records: int
    keys: int = 100
    payload_bytes: int = 64

    def __post_init__(self) -> None:
        if self.records < 0:
            raise ValueError(f"records must be >= 0, got {self.records}")
        if self.keys < 1:
            raise ValueError(f"keys must be >= 1, got {self.keys}")
        if self.payload_bytes < 12:
            raise ValueError(f"payload_bytes must be >= 12, got {self.payload_bytes}")


SourceSpec = GeneratedSource | str
SourceItems = Callable[[int], Iterator[tuple[str, bytes]]]


def generated_items(spec: GeneratedSource, seed: int) -> Iterator[tuple[str, bytes]]:
    rng = random.Random(f"stream-source:{seed}")
    key_names = [f"key-{i:06d}" for i in range(spec.keys)]
    pad = spec.payload_bytes
    for index in range(spec.records):
        key = key_names[rng.randrange(spec.keys)]
        yield key, f"{index:012d}".encode().ljust(pad, b".")


def source_items(spec: SourceSpec) -> SourceItems:
    """A function seed -> items for either kind of source."""
    if isinstance(spec, GeneratedSource):
        return lambda seed: generated_items(spec, seed)
    fn = resolve_callable(spec, what="stream source")

    def user_items(seed: int) -> Iterator[tuple[str, bytes]]:
        for item in fn(seed):  # type: ignore[attr-defined]
            key, payload = item
            if not isinstance(key, str) or not isinstance(payload, bytes):
                raise TypeError(
                    f"stream source {spec!r} must yield (str, bytes) pairs, got {item!r}"
                )
            yield key, payload

    return user_items
