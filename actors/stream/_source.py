"""Sources: a deterministic built-in generator, or a user function ``fn(seed)``.

A source is an iterable of ``(key, payload)`` that yields the same items in
the same order for the same seed, so a restarted producer can skip what the
partitions already hold and neither repeat nor lose an item.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Annotated

import msgspec
from msgspec import Meta

from runtime._callables import resolve_callable
from runtime.scenario import bound_problems

MAX_RECORDS = 100_000_000
MAX_KEYS = 10_000_000
MAX_PAYLOAD_BYTES = 65_536


class GeneratedSource(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Built-in source: ``records`` items over ``keys`` keys with ``payload_bytes`` payloads.

    Each payload starts with the item's index, so every item is distinct and
    an exactly-once check can tell a duplicate from a legitimate repeat.
    """

    records: Annotated[int, Meta(ge=0, le=MAX_RECORDS)]
    keys: Annotated[int, Meta(ge=1, le=MAX_KEYS)] = 100
    payload_bytes: Annotated[int, Meta(ge=12, le=MAX_PAYLOAD_BYTES)] = 64

    def __post_init__(self) -> None:
        for field, problem in bound_problems(self):
            raise ValueError(f"{field}: {problem}")


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
